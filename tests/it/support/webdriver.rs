//! A small W3C WebDriver client over reqwest for Debian's `chromedriver`: the few commands the
//! dashboard tests use (navigate, find, click, type, text, screenshot, logs). A crate such as
//! fantoccini would do the same; this keeps the test build free of its dependency tree.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// Where the browser and its driver are: `NIGHTCRIER_CHROMIUM` / `NIGHTCRIER_CHROMEDRIVER`, else
/// Debian's paths. Missing ones fail the test with what to install: CI runs
/// `scripts/install-test-tools.sh`, which installs both.
pub fn binaries() -> (PathBuf, PathBuf) {
    let find = |var: &str, default: &str| {
        let path = std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default));
        assert!(
            path.is_file(),
            "{} not found (set {var} or run scripts/install-test-tools.sh, which installs Debian's chromium and chromium-driver)",
            path.display()
        );
        path
    };
    (
        find("NIGHTCRIER_CHROMIUM", "/usr/bin/chromium"),
        find("NIGHTCRIER_CHROMEDRIVER", "/usr/bin/chromedriver"),
    )
}

pub struct Driver {
    child: tokio::process::Child,
    http: reqwest::Client,
    base: String,
    session: String,
}

pub type Element = String;

impl Driver {
    /// Starts chromedriver on a free loopback port and a headless Chromium session that may
    /// resolve no host name but loopback (a request that tries to leave shows as an error).
    pub async fn start() -> Driver {
        let (chromium, chromedriver) = binaries();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        // Wait for the driver to listen (bounded: 30 s).
        let mut ready = false;
        for _ in 0..300 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not answer on port {port}");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--no-first-run", "--no-default-browser-check",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-default-apps", "--disable-extensions",
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL", "performance": "ALL" },
        } } });
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {resp}"))
            .to_string();
        Driver {
            child,
            http,
            base,
            session,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(err) = resp["value"]["error"].as_str() {
            panic!("WebDriver {path}: {err}: {}", resp["value"]["message"]);
        }
        resp["value"].clone()
    }

    /// Runs `script` in the page and returns its value.
    pub async fn execute(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every element matching the CSS selector.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e.as_object()
                    .unwrap()
                    .values()
                    .next()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    pub async fn find(&self, css: &str) -> Element {
        let all = self.find_all(css).await;
        assert!(
            !all.is_empty(),
            "no element matches {css:?} on {}",
            self.url().await
        );
        all[0].clone()
    }

    pub async fn click(&self, el: &Element) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn type_into(&self, el: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn text(&self, el: &Element) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{el}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element's DOM property (`textContent`, `value`...).
    pub async fn property(&self, el: &Element, name: &str) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!("/element/{el}/property/{name}"),
            None,
        )
        .await
    }

    /// Polls `check` until it returns `Some` (every 100 ms, at most `limit`): the browser does
    /// things in its own time; this waits for them without asserting how long they take.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {limit:?} for {what} on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// chromedriver's log of `kind` (`browser`: the console; `performance`: DevTools events),
    /// taken since the last call.
    pub async fn log(&self, kind: &str) -> Vec<Value> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({ "type": kind })),
            )
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Console messages at level SEVERE (errors, failed loads, CSP violations).
    pub async fn console_errors(&self) -> Vec<String> {
        self.log("browser")
            .await
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The URL of every request the pages sent since the last call.
    pub async fn requested_urls(&self) -> Vec<String> {
        self.log("performance")
            .await
            .into_iter()
            .filter_map(|e| {
                let msg: Value = serde_json::from_str(e["message"].as_str()?).ok()?;
                (msg["message"]["method"] == "Network.requestWillBeSent").then(|| {
                    msg["message"]["params"]["request"]["url"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
            })
            .collect()
    }

    pub async fn quit(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        let _ = self.child.kill().await;
    }
}
