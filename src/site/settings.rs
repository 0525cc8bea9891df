//! The policy sections of `tend.toml` that a server may override: each exists as a resolved
//! struct (every value set, defaults embedded) and as a layer of optional values that is
//! merged over it, site-wide first, then per server.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::HumanDuration;

/// A whole number that must not be negative; its error says so in words.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Count(pub u64);

impl fmt::Debug for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of 0 or more")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Count, E> {
                u64::try_from(v).map(Count).map_err(|_| E::custom(format!("must be 0 or more, found {v}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(v))
            }
        }
        de.deserialize_i64(Visitor)
    }
}

/// Declares a resolved settings struct, its layer of optional overrides, and the merge.
macro_rules! settings {
    ($(#[$meta:meta])* $name:ident / $layer:ident {
        $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        #[doc = concat!("Optional overrides of [`", stringify!($name), "`], as written in `tend.toml`.")]
        #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $layer {
            $( #[serde(default)] pub $field: Option<$ty>, )*
        }

        impl $layer {
            /// The keys this section accepts.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];
        }

        impl $name {
            /// Sets every value the layer names, leaving the others as they are.
            pub fn overlay(&mut self, layer: &$layer) {
                $( if let Some(value) = &layer.$field { self.$field = value.clone(); } )*
            }
        }
    };
}

/// What a tool-surface change does to a health run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnToolChange {
    Fail,
    Warn,
    Allow,
}

/// What the burst of the health probe sends: `ping`s (the default: the listings are in flight
/// with them, so the server holds its heaviest read-only requests and the burst at once), or
/// one of the listings again and again, a heavier load that costs some servers a few
/// milliseconds a request (server-memory's `tools/list` builds the JSON schema of every tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BurstMethod {
    #[serde(rename = "ping")]
    Ping,
    #[serde(rename = "tools/list")]
    ToolsList,
    #[serde(rename = "resources/list")]
    ResourcesList,
    #[serde(rename = "prompts/list")]
    PromptsList,
}

impl BurstMethod {
    /// The JSON-RPC method.
    pub fn method(self) -> &'static str {
        match self {
            BurstMethod::Ping => "ping",
            BurstMethod::ToolsList => "tools/list",
            BurstMethod::ResourcesList => "resources/list",
            BurstMethod::PromptsList => "prompts/list",
        }
    }

    /// The capability a server must declare for it (none for `ping`).
    pub fn capability(self) -> Option<&'static str> {
        match self {
            BurstMethod::Ping => None,
            BurstMethod::ToolsList => Some("tools"),
            BurstMethod::ResourcesList => Some("resources"),
            BurstMethod::PromptsList => Some("prompts"),
        }
    }
}

/// The things prune can clean, by category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Staging,
    Releases,
    Backups,
    Logs,
    Cache,
    Reports,
}

settings! {
    /// Which versions `check` may offer.
    Policy / PolicyLayer {
        allow_major: bool = false,
        prerelease: bool = false,
        min_release_age: HumanDuration = HumanDuration::from_secs(3 * 86_400),
        allowed: String = "*".into(),
        ignore: Vec<String> = Vec::new(),
        allow_install_scripts: bool = false,
        allow_sha1: bool = false,
        on_tool_change: OnToolChange = OnToolChange::Fail,
    }
}

settings! {
    /// Limits the health suites judge a server against.
    Thresholds / ThresholdsLayer {
        startup_ms: Count = Count(5000),
        latency_p95_ms: Count = Count(100),
        memory_mb: Count = Count(500),
        cpu_percent: Count = Count(80),
        load_memory_mb: Count = Count(1024),
        threads: Count = Count(100),
        fds: Count = Count(1000),
    }
}

settings! {
    /// How long prune keeps each category.
    Retention / RetentionLayer {
        staging_days: Count = Count(7),
        keep_releases: Count = Count(2),
        backups_days: Count = Count(30),
        keep_backups: Count = Count(3),
        logs_days: Count = Count(90),
        cache_days: Count = Count(14),
        reports_days: Count = Count(30),
        archive_before_delete: Vec<Category> = vec![Category::Backups, Category::Logs],
    }
}

settings! {
    /// How the health probe talks to a server: a timeout for each phase, and how much it asks.
    Probe / ProbeLayer {
        initialize_timeout: HumanDuration = HumanDuration::from_secs(10),
        request_timeout: HumanDuration = HumanDuration::from_secs(5),
        call_timeout: HumanDuration = HumanDuration::from_secs(30),
        shutdown_grace: HumanDuration = HumanDuration::from_secs(2),
        idle_window: HumanDuration = HumanDuration::from_millis(50),
        pings: Count = Count(10),
        burst: Count = Count(8),
        burst_method: BurstMethod = BurstMethod::Ping,
    }
}

settings! {
    /// How the post-swap monitor samples the live release.
    Monitor / MonitorLayer {
        count: Count = Count(5),
        interval: HumanDuration = HumanDuration::from_secs(10),
        failure_limit: Count = Count(1),
    }
}

settings! {
    /// The shipped update playbook: how many servers may fail before it stops trying the rest.
    Update / UpdateLayer {
        max_failures: Count = Count(3),
    }
}

settings! {
    /// The playbook sandbox. Every limit of the Rhai engine is set from here.
    Limits / LimitsLayer {
        max_operations: Count = Count(50_000_000),
        timeout: HumanDuration = HumanDuration::from_secs(30 * 60),
        max_call_levels: Count = Count(64),
        max_expr_depth: Count = Count(64),
        max_string_size: Count = Count(1 << 20),
        max_array_size: Count = Count(10_000),
        max_map_size: Count = Count(10_000),
        max_modules: Count = Count(64),
        max_variables: Count = Count(10_000),
    }
}
