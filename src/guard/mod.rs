//! The guard: the only way tend changes a filesystem. It authorizes (tokens and scopes),
//! confines (the path jail), applies effects crash-safely, serializes runs (the run lock) and
//! records what happened (the hash-chained audit log).

pub mod audit;
pub mod auth;
pub mod effects;
pub mod jail;
pub mod lock;

use crate::error::Result;
use crate::layout::Layout;
use crate::site::Site;
use effects::{Effect, Plan};
use jail::Jail;

/// The guard of one run: the site's jail and layout, and whether effects are only shown.
#[derive(Debug, Clone)]
pub struct Guard {
    jail: Jail,
    layout: Layout,
    dry_run: bool,
}

impl Guard {
    pub fn new(site: &Site, dry_run: bool) -> Guard {
        let roots = std::iter::once(site.root.clone()).chain(site.allow.iter().cloned()).collect();
        Guard { jail: Jail::new(roots, site.protected_files()), layout: Layout::new(&site.root), dry_run }
    }

    pub fn jail(&self) -> &Jail {
        &self.jail
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Checks every effect of `plan` before applying any; in a dry run prints them instead.
    /// Returns their descriptions, for the audit log and the report.
    pub fn execute(&self, plan: &Plan) -> Result<Vec<String>> {
        effects::check(&self.jail, plan)?;
        let described = plan.describe();
        if self.dry_run {
            for line in &described {
                tracing::info!(target: "dry_run", "would {line}");
            }
        } else {
            effects::apply(&self.jail, plan)?;
        }
        Ok(described)
    }

    /// Applies tend's own bookkeeping (root folders, reports) even in a dry run.
    pub fn record(&self, plan: &Plan) -> Result<()> {
        effects::check(&self.jail, plan)?;
        effects::apply(&self.jail, plan)
    }

    /// Creates the folders every run needs: state (lock), audit and reports.
    pub fn prepare_root(&self) -> Result<()> {
        let l = &self.layout;
        if [l.state(), l.audit(), l.reports()].iter().all(|d| d.is_dir()) {
            return Ok(());
        }
        self.record(&Plan {
            effects: [l.state(), l.audit(), l.reports()].into_iter().map(|path| Effect::CreateDir { path }).collect(),
            protected: Vec::new(),
        })
    }
}
