//! Oz API wire types, field for field as in the OpenAPI spec. Unknown fields are ignored
//! and unknown enum values are kept (`Other`), never a parse failure.

use crate::ids::{ConversationId, OzRunId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;

/// Declares a string enum that keeps values it does not know in `Other`.
macro_rules! open_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[allow(missing_docs)] $variant,)+
            /// A value this version of ozbridge does not know.
            Other(String),
        }

        impl $name {
            /// The value as sent on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Other(value) => value,
                }
            }

            /// Parses a wire value, keeping unknown ones.
            pub fn parse(value: &str) -> Self {
                match value {
                    $($wire => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Ok(Self::parse(&value))
            }
        }
    };
}

open_enum!(
    /// The state of a run.
    RunState {
        Queued = "QUEUED",
        Pending = "PENDING",
        Claimed = "CLAIMED",
        InProgress = "INPROGRESS",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
        Blocked = "BLOCKED",
        Error = "ERROR",
        Cancelled = "CANCELLED",
    }
);

impl RunState {
    /// True when the run will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Error | Self::Cancelled
        )
    }
}

open_enum!(
    /// Machine-readable platform error codes.
    PlatformErrorCode {
        InsufficientCredits = "insufficient_credits",
        FeatureNotAvailable = "feature_not_available",
        ExternalAuthenticationRequired = "external_authentication_required",
        NotAuthorized = "not_authorized",
        InvalidRequest = "invalid_request",
        ResourceNotFound = "resource_not_found",
        BudgetExceeded = "budget_exceeded",
        IntegrationDisabled = "integration_disabled",
        IntegrationNotConfigured = "integration_not_configured",
        OperationNotSupported = "operation_not_supported",
        EnvironmentSetupFailed = "environment_setup_failed",
        ContentPolicyViolation = "content_policy_violation",
        Conflict = "conflict",
        AuthenticationRequired = "authentication_required",
        ResourceUnavailable = "resource_unavailable",
        InternalError = "internal_error",
    }
);

open_enum!(
    /// Where a run came from.
    RunSourceType {
        Linear = "LINEAR",
        Api = "API",
        Slack = "SLACK",
        Local = "LOCAL",
        ScheduledAgent = "SCHEDULED_AGENT",
        WebApp = "WEB_APP",
        GithubAction = "GITHUB_ACTION",
        CloudMode = "CLOUD_MODE",
        Cli = "CLI",
    }
);

open_enum!(
    /// Where a run executes.
    RunExecutionLocation {
        Local = "LOCAL",
        Remote = "REMOTE",
    }
);

open_enum!(
    /// Artifact kinds, as used by the `artifact_type` list filter.
    ArtifactType {
        Plan = "PLAN",
        PullRequest = "PULL_REQUEST",
        Screenshot = "SCREENSHOT",
        File = "FILE",
    }
);

open_enum!(
    /// Who wrote a conversation message.
    MessageRole {
        User = "user",
        Assistant = "assistant",
        Tool = "tool",
        System = "system",
    }
);

open_enum!(
    /// Model providers.
    ModelProvider {
        OpenAi = "OPENAI",
        Anthropic = "ANTHROPIC",
        Google = "GOOGLE",
        Unknown = "UNKNOWN",
    }
);

/// RFC 7807 problem body returned by every failing Oz call.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub type_uri: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Machine-readable error code.
    #[serde(default)]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// Agent configuration (`AmbientAgentConfig`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentConfig {
    /// Label used to group and filter runs; ozbridge's tracker filters on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill_spec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_use_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_minutes: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<Harness>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_auth_secrets: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_sharing: Option<SessionSharing>,
}

/// `T` when the value has its shape, `None` otherwise.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// What a run has used so far (`request_usage`), in Oz's unit of cost.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_cost: Option<f64>,
}

impl RequestUsage {
    /// Inference plus compute; parts that are missing, negative or not numbers count 0.
    pub fn total(&self) -> f64 {
        let part = |cost: Option<f64>| cost.filter(|c| c.is_finite() && *c >= 0.0).unwrap_or(0.0);
        part(self.inference_cost) + part(self.compute_cost)
    }
}

/// Which execution harness runs the agent (`config.harness`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Harness {
    #[serde(rename = "type")]
    pub kind: HarnessKind,
}

/// The harnesses Oz offers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HarnessKind {
    /// Warp's own (Oz's default).
    Oz,
    /// Claude Code.
    Claude,
    /// Gemini CLI.
    Gemini,
}

impl HarnessKind {
    /// Every harness, by the name users write.
    pub const ALL: [(&'static str, Self); 3] = [
        ("oz", Self::Oz),
        ("claude", Self::Claude),
        ("gemini", Self::Gemini),
    ];

    /// The harness named `name` (any case).
    pub fn named(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, kind)| *kind)
    }

    /// The name users write.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("oz", |(name, _)| name)
    }
}

/// Who may open the run's shared session by its link (`config.session_sharing`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionSharing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access: Option<PublicAccess>,
}

/// Anyone-with-link access to a run's session (they still sign in to Warp).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum PublicAccess {
    /// Read the session and its conversation.
    #[serde(alias = "viewer")]
    Viewer,
    /// Also interact with the session.
    #[serde(alias = "editor")]
    Editor,
}

impl PublicAccess {
    /// The access named `name` (`viewer` or `editor`, any case).
    pub fn named(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "viewer" => Some(Self::Viewer),
            "editor" => Some(Self::Editor),
            _ => None,
        }
    }
}

/// A file attached to a run request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttachmentInput {
    pub file_name: String,
    pub mime_type: String,
    /// Base64 data.
    pub data: String,
}

/// Body of `POST /agent/runs` (`RunAgentRequest`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunAgentRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<AgentConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_identity_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<AttachmentInput>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<OzRunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactive: Option<bool>,
}

/// Reply to a run creation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunAgentResponse {
    pub run_id: OzRunId,
    #[serde(default)]
    pub task_id: String,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_capacity: Option<bool>,
}

/// Why a run is in its state (errors, blocked reasons).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunStatusMessage {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<PlatformErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

/// One run, as returned by get and list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunItem {
    pub run_id: OzRunId,
    #[serde(default)]
    pub task_id: String,
    #[serde(default)]
    pub title: String,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_location: Option<RunExecutionLocation>,
    #[serde(default)]
    pub prompt: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<RunStatusMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RunSourceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<Value>,
    /// Read leniently: usage of an unexpected shape is unknown usage, never an
    /// unreadable run.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub request_usage: Option<RequestUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_config: Option<AgentConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<OzRunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_sandbox_running: Option<bool>,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_skill: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Value>,
}

/// Paging information of a list reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PageInfo {
    pub has_next_page: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl PageInfo {
    /// The cursor of the next page, when there is one.
    pub fn next(self) -> Option<String> {
        self.next_cursor.filter(|_| self.has_next_page)
    }
}

/// Reply of `GET /agent/runs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListRunsResponse {
    pub runs: Vec<RunItem>,
    pub page_info: PageInfo,
}

/// An artifact attached to a run. Unknown artifact types are kept whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Artifact {
    Plan {
        created_at: Option<DateTime<Utc>>,
        data: PlanArtifactData,
    },
    PullRequest {
        created_at: Option<DateTime<Utc>>,
        data: PullRequestArtifactData,
    },
    Screenshot {
        created_at: Option<DateTime<Utc>>,
        data: ScreenshotArtifactData,
    },
    File {
        created_at: Option<DateTime<Utc>>,
        data: FileArtifactData,
    },
    /// An artifact type this version does not know (e.g. `EXTERNAL_REFERENCE`).
    Other { artifact_type: String, raw: Value },
}

impl Artifact {
    /// The id under which Oz serves the artifact's content, for those that have one.
    pub fn uid(&self) -> Option<&str> {
        match self {
            Self::Plan { data, .. } => data.artifact_uid.as_deref(),
            Self::Screenshot { data, .. } => Some(&data.artifact_uid),
            Self::File { data, .. } => Some(&data.artifact_uid),
            Self::PullRequest { .. } | Self::Other { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PlanArtifactData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_uid: Option<String>,
    #[serde(default)]
    pub document_uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notebook_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PullRequestArtifactData {
    pub url: String,
    #[serde(default)]
    pub branch: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScreenshotArtifactData {
    pub artifact_uid: String,
    #[serde(default)]
    pub mime_type: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileArtifactData {
    pub artifact_uid: String,
    #[serde(default)]
    pub filepath: String,
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub mime_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct TaggedArtifact<T> {
    artifact_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at: Option<DateTime<Utc>>,
    data: T,
}

impl Serialize for Artifact {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn tagged<T: Serialize, S: Serializer>(
            serializer: S,
            kind: &str,
            created_at: &Option<DateTime<Utc>>,
            data: &T,
        ) -> Result<S::Ok, S::Error> {
            TaggedArtifact {
                artifact_type: kind.to_owned(),
                created_at: *created_at,
                data,
            }
            .serialize(serializer)
        }
        match self {
            Self::Plan { created_at, data } => tagged(serializer, "PLAN", created_at, data),
            Self::PullRequest { created_at, data } => {
                tagged(serializer, "PULL_REQUEST", created_at, data)
            }
            Self::Screenshot { created_at, data } => {
                tagged(serializer, "SCREENSHOT", created_at, data)
            }
            Self::File { created_at, data } => tagged(serializer, "FILE", created_at, data),
            Self::Other { raw, .. } => raw.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Artifact {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        let kind = raw
            .get("artifact_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        fn parse<T: serde::de::DeserializeOwned>(
            raw: &Value,
        ) -> Option<(Option<DateTime<Utc>>, T)> {
            let tagged: TaggedArtifact<T> = serde_json::from_value(raw.clone()).ok()?;
            Some((tagged.created_at, tagged.data))
        }
        let known = match kind.as_str() {
            "PLAN" => parse(&raw).map(|(created_at, data)| Self::Plan { created_at, data }),
            "PULL_REQUEST" => {
                parse(&raw).map(|(created_at, data)| Self::PullRequest { created_at, data })
            }
            "SCREENSHOT" => {
                parse(&raw).map(|(created_at, data)| Self::Screenshot { created_at, data })
            }
            "FILE" => parse(&raw).map(|(created_at, data)| Self::File { created_at, data }),
            _ => None,
        };
        Ok(known.unwrap_or(Self::Other {
            artifact_type: kind,
            raw,
        }))
    }
}

/// Reply of the two conversation endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConversationResponse {
    pub conversation_id: ConversationId,
    #[serde(default)]
    pub steps: Vec<ConversationStep>,
}

/// A step of a conversation; steps nest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConversationStep {
    #[serde(default)]
    pub id: String,
    /// The instruction or delegated work of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub messages: Vec<ConversationMessage>,
    #[serde(default)]
    pub steps: Vec<ConversationStep>,
}

/// One message of a conversation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConversationMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub role: MessageRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
}

/// A content block; only text is interpreted, the rest is kept as JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlock {
    Text { text: String },
    Other(Value),
}

impl Serialize for ContentBlock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text { text } => {
                serde_json::json!({ "type": "text", "text": text }).serialize(serializer)
            }
            Self::Other(raw) => raw.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        match (
            raw.get("type").and_then(Value::as_str),
            raw.get("text").and_then(Value::as_str),
        ) {
            (Some("text"), Some(text)) => Ok(Self::Text {
                text: text.to_owned(),
            }),
            _ => Ok(Self::Other(raw)),
        }
    }
}

impl ConversationResponse {
    /// The text of the last assistant message, depth first in step order.
    pub fn last_assistant_text(&self) -> Option<String> {
        fn walk(steps: &[ConversationStep], found: &mut Option<String>) {
            for step in steps {
                for message in &step.messages {
                    if message.role == MessageRole::Assistant {
                        let text: Vec<&str> = message
                            .content
                            .iter()
                            .filter_map(|block| match block {
                                ContentBlock::Text { text } => Some(text.as_str()),
                                ContentBlock::Other(_) => None,
                            })
                            .collect();
                        if !text.is_empty() {
                            *found = Some(text.join("\n"));
                        }
                    }
                }
                walk(&step.steps, found);
            }
        }
        let mut found = None;
        walk(&self.steps, &mut found);
        found
    }
}

/// One model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default = "unknown_provider")]
    pub provider: ModelProvider,
    #[serde(default)]
    pub vision_supported: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_reason: Option<String>,
}

fn unknown_provider() -> ModelProvider {
    ModelProvider::Unknown
}

/// Reply of `GET /agent/models`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListModelsResponse {
    #[serde(default)]
    pub default_model_id: String,
    #[serde(default)]
    pub models: Vec<ModelInfo>,
}

/// Reply of `GET /agent`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListAgentsResponse {
    #[serde(default)]
    pub agents: Vec<AgentListItem>,
}

/// An agent (a skill) and its variants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentListItem {
    pub name: String,
    #[serde(default)]
    pub variants: Vec<AgentListVariant>,
}

/// One variant of an agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentListVariant {
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub base_prompt: String,
    pub source: AgentListSource,
    #[serde(default)]
    pub environments: Vec<AgentListEnvironment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_timestamp: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AgentListVariant {
    /// The skill spec that selects this variant: `owner/repo:path`.
    pub fn skill_spec(&self) -> String {
        format!(
            "{}/{}:{}",
            self.source.owner, self.source.name, self.source.skill_path
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentListSource {
    pub owner: String,
    pub name: String,
    pub skill_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_host: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentListEnvironment {
    pub uid: String,
    pub name: String,
}

/// Reply of `GET /agent/artifacts/{uid}`; the data is kept as JSON since its shape
/// depends on the artifact type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArtifactResponse {
    pub artifact_uid: String,
    pub artifact_type: ArtifactType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub data: Value,
}

impl ArtifactResponse {
    /// The short-lived download URL of a screenshot or file.
    pub fn download_url(&self) -> Option<&str> {
        self.data.get("download_url").and_then(Value::as_str)
    }
}

/// Reply of `GET /agent/sessions/{uuid}/redirect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SessionRedirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<ConversationId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_values_are_kept_not_rejected() {
        let raw = serde_json::json!({
            "run_id": "r1", "task_id": "t1", "title": "x", "state": "HIBERNATING",
            "prompt": "p", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:01Z", "brand_new_field": {"a": 1},
            "artifacts": [
                {"artifact_type": "EXTERNAL_REFERENCE", "created_at": "2026-01-01T00:00:00Z", "data": {"url": "u"}},
                {"artifact_type": "PULL_REQUEST", "created_at": "2026-01-01T00:00:00Z", "data": {"url": "https://github.com/o/r/pull/1", "branch": "fix"}}
            ],
            "status_message": {"message": "m", "error_code": "quantum_flux", "retryable": true}
        });
        let run: RunItem = serde_json::from_value(raw).unwrap();
        assert_eq!(run.state, RunState::Other("HIBERNATING".into()));
        assert!(!run.state.is_terminal());
        assert!(
            matches!(&run.artifacts[0], Artifact::Other { artifact_type, .. } if artifact_type == "EXTERNAL_REFERENCE")
        );
        assert!(
            matches!(&run.artifacts[1], Artifact::PullRequest { data, .. } if data.branch == "fix")
        );
        let code = run.status_message.and_then(|m| m.error_code);
        assert_eq!(code, Some(PlatformErrorCode::Other("quantum_flux".into())));
        // And it serializes back to the same wire values.
        let again = serde_json::to_value(&run.artifacts[0]).unwrap();
        assert_eq!(again["artifact_type"], "EXTERNAL_REFERENCE");
    }

    #[test]
    fn last_assistant_text_walks_nested_steps() {
        let raw = serde_json::json!({
            "conversation_id": "c1",
            "steps": [{"id": "1", "messages": [
                {"role": "user", "content": [{"type": "text", "text": "do it"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "first"}]}
            ], "steps": [{"id": "2", "messages": [
                {"role": "assistant", "content": [{"type": "action", "id": "a", "category": "command", "name": "ls", "input": {}},
                                                   {"type": "text", "text": "Done: fixed it."}]}
            ], "steps": []}]}]
        });
        let conversation: ConversationResponse = serde_json::from_value(raw).unwrap();
        assert_eq!(
            conversation.last_assistant_text().as_deref(),
            Some("Done: fixed it.")
        );
    }
}
