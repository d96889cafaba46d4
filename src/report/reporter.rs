//! The reporter task: polls the store for finished, unreported runs and reports each once, in
//! finish order (which is what the failure breaker counts in).

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::blocks::RunFacts;
use super::breaker::{Breaker, FailedRun, Transition};
use super::message::{self, Links};
use super::render::render_page_with;
use super::slack::{NotifyError, SlackNotifier};
use super::slack_app::{Delivery, SlackApp};
use super::summary::{summarize, Summary};
use crate::agent::{AgentError, Bounded, Workspace};
use crate::config::Config;
use crate::incident::{Incident, IncidentStatus};
use crate::store::{Store, StoreError};

/// Incidents read per store query.
pub const DEFAULT_BATCH: u32 = 50;
/// Reports larger than this are not rendered (an agent gone wild); the page says so. Defined
/// once, by the agent runtime (a run with a larger report fails).
pub use crate::agent::MAX_REPORT_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("notifications.slack: {0}")]
    Slack(#[from] NotifyError),
    #[error("notifications.slack: {0}")]
    SlackApp(#[from] super::slack_app::ApiError),
    #[error(transparent)]
    Artifacts(#[from] super::artifacts::ArtifactError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterSettings {
    pub workspace_root: PathBuf,
    /// Public address of the HTTP endpoint for links.
    pub base_url: Option<String>,
    pub poll_interval: Duration,
    /// Reporting tries of one run (uploads) before it is reported without them.
    pub max_attempts: u32,
    pub failure_threshold: u32,
    pub batch: u32,
}

impl ReporterSettings {
    pub fn from_config(c: &Config) -> Self {
        Self {
            workspace_root: c.workspace_root.clone(),
            base_url: super::base_url(c),
            poll_interval: c.reporting.poll_interval,
            max_attempts: c.reporting.max_attempts.max(1),
            failure_threshold: c.notifications.failure_threshold,
            batch: DEFAULT_BATCH,
        }
    }
}

/// What one pass did; the loop logs only when something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportCounts {
    /// Runs marked reported.
    pub reported: u64,
    /// `investigation.html` files written.
    pub rendered: u64,
    pub notified: u64,
    /// Messages that failed after their retries (logged and counted, not retried later).
    pub notify_failed: u64,
    pub uploaded: u64,
    /// Runs left for a later pass (an upload failed).
    pub deferred: u64,
}

impl ReportCounts {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `output/investigation.html` of a workspace ([`Workspace::html_report_file`]).
pub fn html_report_file(ws: &Workspace) -> PathBuf {
    ws.html_report_file()
}

pub struct Reporter {
    store: Store,
    settings: ReporterSettings,
    slack: Option<SlackNotifier>,
    /// Slack app mode (one thread per incident), instead of `slack`.
    slack_app: Option<SlackApp>,
    artifacts: Option<super::artifacts::ArtifactStore>,
    breaker: Breaker,
    /// Each cluster's `environment` and `labels`, shown in its Slack messages.
    cluster_context: std::collections::HashMap<String, Vec<(String, String)>>,
}

impl Reporter {
    pub fn new(store: Store, settings: ReporterSettings) -> Self {
        let breaker = Breaker::new(settings.failure_threshold);
        Self {
            store,
            settings,
            slack: None,
            slack_app: None,
            artifacts: None,
            breaker,
            cluster_context: Default::default(),
        }
    }

    /// Shows each cluster's `environment` and `labels` in its success messages.
    pub fn with_cluster_context(mut self, clusters: &[crate::config::ClusterConfig]) -> Self {
        self.cluster_context = clusters
            .iter()
            .map(|c| {
                let env = c
                    .environment
                    .iter()
                    .map(|e| ("environment".to_string(), e.clone()));
                let labels = c.labels.iter().map(|(k, v)| (k.clone(), v.clone()));
                (c.name.clone(), env.chain(labels).collect())
            })
            .collect();
        self
    }

    /// From `reporting.*` and `notifications.*`.
    pub fn from_config(store: Store, c: &Config) -> Result<Self, ReportError> {
        let mut r =
            Self::new(store, ReporterSettings::from_config(c)).with_cluster_context(&c.clusters);
        if let Some(slack) = &c.notifications.slack {
            r = match SlackApp::from_config(slack)? {
                Some(app) => r.with_slack_app(app),
                None => r.with_slack(SlackNotifier::from_config(slack)?),
            };
        }
        if let Some(a) = &c.reporting.artifacts {
            r = r.with_artifacts(super::artifacts::ArtifactStore::from_config(a)?);
        }
        Ok(r)
    }

    pub fn with_slack(mut self, slack: SlackNotifier) -> Self {
        self.slack = Some(slack);
        self
    }

    /// Slack app mode: incident threads through the Web API.
    pub fn with_slack_app(mut self, app: SlackApp) -> Self {
        self.slack_app = Some(app);
        self
    }

    pub fn with_artifacts(mut self, store: super::artifacts::ArtifactStore) -> Self {
        self.artifacts = Some(store);
        self
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Polls every `poll_interval` until `token` is cancelled. A pass in progress is abandoned
    /// on cancel; its unmarked runs are reported after the next start.
    pub async fn run(mut self, token: CancellationToken) {
        let mut store_down = false;
        loop {
            let pass = tokio::select! {
                _ = token.cancelled() => return,
                r = self.run_once() => r,
            };
            match pass {
                Ok(counts) => {
                    if store_down {
                        tracing::info!("reporter reads the store again");
                        store_down = false;
                    }
                    if !counts.is_empty() {
                        tracing::debug!(?counts, "reporter pass");
                    }
                    // A full batch means more may be waiting.
                    if counts.reported + counts.deferred >= u64::from(self.settings.batch) {
                        continue;
                    }
                }
                Err(e) => {
                    // Once per outage, not once per poll.
                    if !store_down {
                        tracing::warn!(error = %e, "reporter cannot read the store; will retry");
                        store_down = true;
                    }
                }
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    /// Reports every finished, unreported run (one batch), oldest first.
    pub async fn run_once(&mut self) -> Result<ReportCounts, StoreError> {
        let mut counts = ReportCounts::default();
        if let Some(app) = &self.slack_app {
            counts.notified += app
                .sync(
                    &self.store,
                    self.settings.base_url.as_deref(),
                    &self.cluster_context,
                )
                .await?;
        }
        let batch = self
            .store
            .unreported_finished(self.settings.batch.max(1))
            .await?;
        for incident in batch {
            let done = match incident.status {
                IncidentStatus::Succeeded => self.report_success(&incident, &mut counts).await?,
                _ => self.report_failure(&incident, &mut counts).await,
            };
            if done {
                self.store
                    .mark_reported(incident.id, incident.attempt)
                    .await?;
                metrics::counter!(crate::telemetry::names::REPORTS, "outcome" => incident.status.as_str())
                    .increment(1);
                counts.reported += 1;
            }
        }
        Ok(counts)
    }

    /// `Ok(false)`: left for a later pass.
    async fn report_success(
        &mut self,
        incident: &Incident,
        counts: &mut ReportCounts,
    ) -> Result<bool, StoreError> {
        let ws = Workspace::new(&self.settings.workspace_root, incident.id);
        let usage = self.latest_usage(incident).await;
        let usage_rows = super::facts::page_facts(&self.store, incident).await;
        let mut report_text = None;
        let summary = match read_report(&ws).await {
            Ok(markdown) => {
                let page = render_page_with(incident, &markdown, &usage_rows);
                match write_html(&ws, &page).await {
                    Ok(()) => counts.rendered += 1,
                    Err(e) => {
                        tracing::warn!(
                            incident_id = %incident.id, cluster = %incident.cluster, error = %e,
                            "cannot write investigation.html; the page renders it on request"
                        );
                        // Whatever the agent left under that name must not be uploaded as ours.
                        remove_html(&ws).await;
                    }
                }
                let summary = summarize(&markdown);
                report_text = Some(markdown);
                summary
            }
            Err(e) => {
                tracing::warn!(
                    incident_id = %incident.id, cluster = %incident.cluster, error = %e,
                    "cannot read the report of a succeeded run"
                );
                Summary::default()
            }
        };
        // The agent's verdict.json, when present, states the cause for machines: it wins.
        let verdict = super::verdict::read(ws.dir());
        let evidence = verdict
            .as_ref()
            .map(|v| v.evidence.clone())
            .unwrap_or_default();
        let summary = match verdict {
            Some(v) if v.root_cause.is_some() => Summary {
                root_cause: v.root_cause.as_deref().map(super::summary::truncate),
                confidence: v.confidence.or(summary.confidence),
                excerpt: summary.excerpt,
            },
            _ => summary,
        };
        let mut links = Links::for_incident(self.settings.base_url.as_deref(), incident);
        match self.upload(&ws, incident, counts).await? {
            Upload::Done(url) => links.artifact = url,
            Upload::Later => return Ok(false),
            Upload::GaveUp => {}
        }
        if let Some(Transition::Recovered { failures }) = self.breaker.on_success() {
            metrics::gauge!(crate::telemetry::names::TRIAGE_DEGRADED).set(0.0);
            tracing::info!(failures, "triage recovered: a run succeeded");
            self.notify(
                "recovered",
                incident,
                &message::recovered(failures, incident),
                counts,
            )
            .await;
        }
        if self.slack_app.is_some() {
            let facts = RunFacts {
                cost: cost_of(usage.as_ref()),
                summary,
                failure: None,
                report: report_text,
                evidence,
                related: usage_rows
                    .iter()
                    .find(|(k, _)| *k == "Related faults")
                    .map(|(_, v)| v.clone()),
            };
            return Ok(self.notify_app(incident, &facts, &links, counts).await);
        }
        let mut msg = message::success(incident, &summary, &links);
        if let Some(pairs) = self.cluster_context.get(&incident.cluster) {
            message::add_cluster_context(&mut msg, pairs);
        }
        super::cost::add_to_message(&mut msg, usage.as_ref());
        self.notify("success", incident, &msg, counts).await;
        Ok(true)
    }

    /// The usage of the incident's latest attempt; `None` when unknown or unreadable (the
    /// report goes out without it rather than wait).
    async fn latest_usage(&self, incident: &Incident) -> Option<crate::accounting::RunUsage> {
        match self.store.agent_runs(incident.id).await {
            Ok(runs) => runs
                .into_iter()
                .find(|r| r.attempt == incident.attempt)
                .and_then(|r| r.usage),
            Err(e) => {
                tracing::debug!(incident_id = %incident.id, error = %e, "cannot read the run's usage for the report");
                None
            }
        }
    }

    /// `false`: left for a later pass.
    async fn report_failure(&mut self, incident: &Incident, counts: &mut ReportCounts) -> bool {
        let mut links = Links::for_incident(self.settings.base_url.as_deref(), incident);
        if self
            .artifacts
            .as_ref()
            .is_some_and(|a| a.uploads_failed_runs())
        {
            let ws = Workspace::new(&self.settings.workspace_root, incident.id);
            // Before the breaker counts this run: a deferred run comes back next pass.
            match self.upload(&ws, incident, counts).await {
                Ok(Upload::Done(url)) => links.artifact = url,
                Ok(Upload::Later) => return false,
                Ok(Upload::GaveUp) => {}
                Err(e) => {
                    tracing::warn!(incident_id = %incident.id, error = %e, "cannot count a failed upload; reporting without it");
                }
            }
        }
        let reason = incident
            .failure_reason
            .clone()
            .unwrap_or_else(|| incident.status.to_string());
        let run = FailedRun {
            incident_id: incident.id,
            cluster: incident.cluster.clone(),
            reason: reason.clone(),
        };
        if let Some(Transition::Degraded { consecutive, last }) = self.breaker.on_failure(run) {
            metrics::gauge!(crate::telemetry::names::TRIAGE_DEGRADED).set(1.0);
            tracing::warn!(
                consecutive,
                "triage degraded: consecutive agent runs failed"
            );
            let payload = message::degraded(consecutive, &last, self.settings.base_url.as_deref());
            self.notify("degraded", incident, &payload, counts).await;
        }
        if self.slack_app.is_some() {
            let facts = RunFacts {
                cost: cost_of(self.latest_usage(incident).await.as_ref()),
                failure: Some(reason),
                ..RunFacts::default()
            };
            return self.notify_app(incident, &facts, &links, counts).await;
        }
        true
    }

    /// Slack app mode: the run's result in the incident's thread. `false`: another process is
    /// posting the parent; left for a later pass.
    async fn notify_app(
        &self,
        incident: &Incident,
        facts: &RunFacts,
        links: &Links,
        counts: &mut ReportCounts,
    ) -> bool {
        let Some(app) = &self.slack_app else {
            return true;
        };
        let ctx = self
            .cluster_context
            .get(&incident.cluster)
            .map_or(&[][..], Vec::as_slice);
        let kind = if facts.failure.is_some() {
            "failure"
        } else {
            "success"
        };
        match app
            .run_ended(&self.store, incident, facts, links, ctx)
            .await
        {
            Ok(Delivery::Done) => {
                counts.notified += 1;
                metrics::counter!(crate::telemetry::names::NOTIFICATIONS, "kind" => kind, "result" => "sent")
                    .increment(1);
                true
            }
            Ok(Delivery::Busy) => {
                counts.deferred += 1;
                false
            }
            Err(e) => {
                counts.notify_failed += 1;
                metrics::counter!(crate::telemetry::names::NOTIFICATIONS, "kind" => kind, "result" => "failed")
                    .increment(1);
                app.log_failure(incident, kind, &e);
                true
            }
        }
    }

    async fn notify(
        &self,
        kind: &'static str,
        incident: &Incident,
        payload: &serde_json::Value,
        counts: &mut ReportCounts,
    ) {
        if let (None, Some(app)) = (&self.slack, &self.slack_app) {
            match app.post_alert(&incident.cluster, payload).await {
                Ok(()) => counts.notified += 1,
                Err(e) => {
                    counts.notify_failed += 1;
                    app.log_failure(incident, kind, &e);
                }
            }
            return;
        }
        let Some(slack) = &self.slack else { return };
        match slack.send(payload).await {
            Ok(_) => {
                counts.notified += 1;
                metrics::counter!(crate::telemetry::names::NOTIFICATIONS, "kind" => kind, "result" => "sent")
                    .increment(1);
            }
            Err(e) => {
                counts.notify_failed += 1;
                metrics::counter!(crate::telemetry::names::NOTIFICATIONS, "kind" => kind, "result" => "failed")
                    .increment(1);
                tracing::warn!(
                    incident_id = %incident.id, cluster = %incident.cluster, kind, error = %e,
                    "Slack notification failed"
                );
            }
        }
    }

    async fn upload(
        &self,
        ws: &Workspace,
        incident: &Incident,
        counts: &mut ReportCounts,
    ) -> Result<Upload, StoreError> {
        let Some(artifacts) = &self.artifacts else {
            return Ok(Upload::GaveUp);
        };
        match artifacts.upload_incident(ws, incident.id).await {
            Ok(up) => {
                counts.uploaded += 1;
                metrics::counter!(crate::telemetry::names::ARTIFACT_UPLOADS, "result" => "ok")
                    .increment(1);
                Ok(Upload::Done(up.report_url))
            }
            Err(e) => {
                metrics::counter!(crate::telemetry::names::ARTIFACT_UPLOADS, "result" => "failed")
                    .increment(1);
                let failures = self
                    .store
                    .record_report_failure(incident.id, incident.attempt)
                    .await?;
                let give_up =
                    failures >= i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX);
                tracing::warn!(
                    incident_id = %incident.id, cluster = %incident.cluster, error = %e, failures,
                    give_up, "artifact upload failed"
                );
                if give_up {
                    Ok(Upload::GaveUp)
                } else {
                    counts.deferred += 1;
                    Ok(Upload::Later)
                }
            }
        }
    }
}

enum Upload {
    Done(Option<String>),
    Later,
    GaveUp,
}

/// The report as text, bounded, read through the workspace's descriptors (never following a
/// link the agent planted); a missing file is an error (a succeeded run has one).
pub(crate) async fn read_report(ws: &Workspace) -> Result<String, AgentError> {
    let ws = ws.clone();
    let read = tokio::task::spawn_blocking(move || {
        let path = ws.report_file();
        let not_usable =
            |message: String| AgentError::workspace(&path)(std::io::Error::other(message));
        match ws.read(&path, MAX_REPORT_BYTES)? {
            Some(Bounded::Content(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Some(Bounded::TooLarge(len)) => Err(not_usable(format!(
                "{len} bytes, above the {MAX_REPORT_BYTES}-byte limit"
            ))),
            None => Err(not_usable("missing or not a regular file".into())),
        }
    });
    read.await
        .map_err(|e| AgentError::workspace("investigation.md")(std::io::Error::other(e)))?
}

async fn remove_html(ws: &Workspace) {
    let ws = ws.clone();
    let removed = tokio::task::spawn_blocking(move || {
        ws.open()?
            .map(|dir| dir.open_dir("output"))
            .transpose()?
            .flatten()
            .map_or(Ok(()), |out| out.remove("investigation.html"))
    })
    .await;
    if let Ok(Err(e)) = removed {
        tracing::warn!(error = %e, "cannot remove an investigation.html nightcrier did not write");
    }
}

/// Written next to the report through a temporary file in the same directory descriptor, so a
/// reader never sees half a page and nothing the agent planted (a symlinked `output/` or
/// temporary name) is followed.
async fn write_html(ws: &Workspace, html: &str) -> Result<(), AgentError> {
    let ws = ws.clone();
    let html = html.to_owned();
    tokio::task::spawn_blocking(move || ws.write(&html_report_file(&ws), html.as_bytes()))
        .await
        .map_err(|e| AgentError::workspace("investigation.html")(std::io::Error::other(e)))?
}

/// The run's cost as the parent message shows it.
fn cost_of(usage: Option<&crate::accounting::RunUsage>) -> Option<String> {
    super::cost::usage_rows(usage)
        .into_iter()
        .next()
        .map(|(_, v)| v)
}
