//! Markdown report → one standalone HTML page (inline CSS, no scripts, no external assets).
//!
//! The report is written by an agent that read cluster data, so it is untrusted: raw HTML in it
//! is shown as text, link targets other than http(s)/mailto/fragments are dropped, and images
//! become plain links so the page never loads anything from elsewhere.

use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd};

use crate::incident::Incident;

const STYLE: &str = r#"
:root { color-scheme: light dark; }
body { font: 15px/1.55 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1f2328; background: #fff; }
header.meta { border-bottom: 1px solid #d0d7de; margin-bottom: 1.5rem; padding-bottom: .5rem; }
header.meta dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: .5rem 0; }
header.meta dt { font-weight: 600; color: #57606a; }
header.meta dd { margin: 0; }
h1, h2, h3, h4 { line-height: 1.25; margin-top: 1.6em; }
h1 { font-size: 1.7rem; } h2 { font-size: 1.35rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
code { font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       background: #f6f8fa; padding: .1em .3em; border-radius: 4px; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .8rem 1rem;
      overflow-x: auto; }
pre code { background: none; padding: 0; white-space: pre; }
table { border-collapse: collapse; margin: 1rem 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: .35rem .7rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
tr:nth-child(even) td { background: #fbfcfd; }
blockquote { margin: 0; padding: 0 1rem; color: #57606a; border-left: .25rem solid #d0d7de; }
a { color: #0969da; }
@media (prefers-color-scheme: dark) {
  body { color: #e6edf3; background: #0d1117; }
  code, pre, th { background: #161b22; } tr:nth-child(even) td { background: #11161d; }
  th, td, pre, h2, header.meta { border-color: #30363d; }
  a { color: #4493f8; } header.meta dt, blockquote { color: #8d96a0; }
}
"#;

/// The Markdown extensions reports use.
pub(crate) fn markdown_options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}

/// The report body as sanitised HTML (no page around it).
pub fn markdown_to_html(markdown: &str) -> String {
    let events = Parser::new_ext(markdown, markdown_options()).map(sanitise);
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

/// A complete HTML document: the incident's key facts, then the rendered report.
pub fn render_page(incident: &Incident, markdown: &str) -> String {
    render_page_with(incident, markdown, &[])
}

/// [`render_page`] with `extra` key facts after the incident's (the run's cost, for example).
pub fn render_page_with(incident: &Incident, markdown: &str, extra: &[(&str, String)]) -> String {
    let title = format!(
        "Investigation: {} {}/{} on {}",
        incident.fault_type, incident.resource_kind, incident.resource_name, incident.cluster
    );
    let namespace = incident.namespace.as_deref().unwrap_or("-");
    let rows = [
        ("Incident", incident.id.to_string()),
        ("Cluster", incident.cluster.clone()),
        ("Namespace", namespace.to_string()),
        (
            "Resource",
            format!("{}/{}", incident.resource_kind, incident.resource_name),
        ),
        ("Fault", incident.fault_type.clone()),
        ("Severity", incident.severity.clone()),
        ("Status", incident.status.to_string()),
        ("Occurrences", incident.occurrences.to_string()),
        ("First seen", incident.first_seen.to_rfc3339()),
    ];
    let mut meta = String::new();
    for (k, v) in rows.iter().chain(extra) {
        meta.push_str(&format!("<dt>{}</dt><dd>{}</dd>", escape(k), escape(v)));
    }
    // The source (a resolved alert) said the fault was over while the agent ran.
    if let Some(t) = incident.resolved_at {
        meta.push_str(&format!(
            "<dt>Alert resolved</dt><dd>{}</dd>",
            escape(&t.to_rfc3339())
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header class=\"meta\"><dl>{meta}</dl></header>\n<main>\n{body}</main>\n</body>\n</html>\n",
        title = escape(&title),
        body = markdown_to_html(markdown),
    )
}

/// HTML-escapes text for element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn sanitise(event: Event<'_>) -> Event<'_> {
    match event {
        // Raw HTML from the report is shown, never interpreted.
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        // An image would be fetched by the browser: link to it instead.
        Event::Start(Tag::Image {
            dest_url,
            title,
            id,
            ..
        }) => Event::Start(Tag::Link {
            link_type: LinkType::Inline,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    }
}

fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lower = url.trim_start().to_ascii_lowercase();
    let has_scheme = lower
        .split_once(':')
        .is_some_and(|(scheme, _)| !scheme.contains(['/', '?', '#']));
    let allowed = ["http:", "https:", "mailto:"]
        .iter()
        .any(|s| lower.starts_with(s));
    if has_scheme && !allowed {
        CowStr::Borrowed("#")
    } else {
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_and_script_urls_are_neutralised() {
        let html = markdown_to_html(
            "<script>alert(1)</script>\n\nsee [x](javascript:alert(1)) and ![i](http://e.x/i.png) <b>b</b>",
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("href=\"http://e.x/i.png\""), "{html}");
        assert!(html.contains("&lt;b&gt;"), "{html}");
    }

    #[test]
    fn relative_and_web_links_are_kept() {
        let html = markdown_to_html("[a](https://k8s.io) [b](#fix) [c](logs/agent.log)");
        assert!(html.contains("href=\"https://k8s.io\""));
        assert!(html.contains("href=\"#fix\""));
        assert!(html.contains("href=\"logs/agent.log\""));
    }
}
