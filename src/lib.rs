//! tend keeps a host's MCP servers current, tested and tidy.
//!
//! Playbooks (Rhai scripts) describe the update, test and cleanup pipelines; this crate is the
//! host that runs them. It owns every side effect: [`guard`] authorizes each mutating call
//! against a token's scopes, confines every write to the site's root through a path jail,
//! applies changes crash-safely and records them in a hash-chained audit log.
//!
//! Other programs embed tend through [`Site`] and [`Runtime`]:
//!
//! ```
//! use tend::{Playbook, Primitive, ParamType, RunOptions, Runtime, Site};
//!
//! # fn main() -> Result<(), tend::Error> {
//! let dir = std::env::temp_dir().join(format!("tend-doc-{}", std::process::id()));
//! let mut site = Site::defaults(&dir)?;
//! site.root = dir.join("root");
//!
//! let mut runtime = Runtime::new(site);
//! // An extra primitive, declared once: it is registered, checked and documented like the
//! // built-in ones (`tend api` lists it).
//! runtime.register(
//!     Primitive::new("greet", "string", "says hello")
//!         .param("who", ParamType::String)
//!         .body(|_call, args| Ok(format!("hello, {}", args[0].as_str().unwrap_or("")).into())),
//! );
//!
//! let playbook = Playbook::from_source("inline.rhai", r#"greet(vars.who)"#, &dir);
//! let mut options = RunOptions::default();
//! options.vars.insert("who".into(), "world".into());
//! let report = runtime.run(&playbook, options)?;
//! assert_eq!(report.exit_code(), 0);
//! assert_eq!(report.result, "hello, world");
//! assert!(report.path.is_file());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

pub mod clock;
pub mod duration;
mod error;
pub mod extract;
pub mod guard;
pub mod layout;
pub mod mcp;
pub mod ops;
pub mod proc;
pub mod progress;
pub mod registry;
pub mod report;
pub mod schedule;
pub mod script;
pub mod site;

pub use error::{Error, ErrorKind, Result};
pub use guard::auth::{Scope, Token};
pub use report::RunReport;
pub use script::primitives::{Call, ParamType, Primitive};
pub use script::{Playbook, RunOptions, Runtime};
pub use site::Site;
