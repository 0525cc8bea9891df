//! Primitive declarations. A primitive is declared once (name, parameters, scope, doc, what it
//! returns, and its Rust body); that one declaration drives its registration in the engine,
//! the scope check before it runs, its audit record, and `tend api`.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::guard::Guard;
use crate::guard::auth::{Principal, Scope};
use crate::guard::effects::Plan;
use crate::site::Site;

/// The Rhai type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Bool,
    Map,
    Array,
    Any,
}

/// One parameter of a primitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Param {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ParamType,
}

/// The body of a primitive: arguments arrive as JSON values in declaration order, and the
/// result goes back to the playbook as a Rhai value.
pub type Body = dyn Fn(&mut Call<'_>, Vec<Value>) -> Result<Value> + Send + Sync;

/// One declared primitive. Overloads (`health(name)` and `health(name, opts)`) are two
/// declarations with the same name.
#[derive(Clone, Serialize)]
pub struct Primitive {
    pub name: String,
    pub params: Vec<Param>,
    pub scope: Option<Scope>,
    pub doc: String,
    pub returns: String,
    #[serde(skip)]
    pub body: Arc<Body>,
}

impl fmt::Debug for Primitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Primitive")
            .field("name", &self.name)
            .field("params", &self.params)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Primitive {
    /// Starts a declaration: `Primitive::new("servers", "array of ...", "lists ...")`.
    pub fn new(name: impl Into<String>, returns: impl Into<String>, doc: impl Into<String>) -> Primitive {
        Primitive {
            name: name.into(),
            params: Vec::new(),
            scope: None,
            doc: doc.into(),
            returns: returns.into(),
            body: Arc::new(|_, _| Ok(Value::Null)),
        }
    }

    #[must_use]
    pub fn param(mut self, name: impl Into<String>, ty: ParamType) -> Primitive {
        self.params.push(Param { name: name.into(), ty });
        self
    }

    /// The scope a token needs to call this primitive; a primitive with a scope is mutating
    /// and every call of it is audited.
    #[must_use]
    pub fn scope(mut self, scope: Scope) -> Primitive {
        self.scope = Some(scope);
        self
    }

    #[must_use]
    pub fn body(
        mut self,
        body: impl Fn(&mut Call<'_>, Vec<Value>) -> Result<Value> + Send + Sync + 'static,
    ) -> Primitive {
        self.body = Arc::new(body);
        self
    }

    /// `check(name: string)`, as `tend api` shows it.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| {
                format!(
                    "{}: {}",
                    p.name,
                    serde_json::to_value(p.ty).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
                )
            })
            .collect();
        format!("{}({})", self.name, params.join(", "))
    }
}

/// What a primitive's body may use: the site, the guard for effects, who is running.
#[derive(Debug)]
pub struct Call<'a> {
    pub site: &'a Site,
    pub guard: &'a Guard,
    pub principal: &'a Principal,
    pub run_id: &'a str,
    /// The run's clock: the time policies are judged at (`RunOptions::now`, else the system).
    pub now: time::OffsetDateTime,
    /// Whether a long step may draw a progress bar on stderr (`RunOptions::progress`).
    pub progress: bool,
    pub(crate) effects: Vec<String>,
}

impl Call<'_> {
    /// Checks every effect of `plan`, then applies it (or shows it in a dry run). The effects
    /// go into this call's audit record.
    pub fn execute(&mut self, plan: &Plan) -> Result<()> {
        let described = self.guard.execute(plan)?;
        self.effects.extend(described);
        Ok(())
    }

    pub fn dry_run(&self) -> bool {
        self.guard.dry_run()
    }
}

/// The primitives a runtime registers, in declaration order.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    primitives: Vec<Primitive>,
}

impl Registry {
    pub fn add(&mut self, primitive: Primitive) {
        self.primitives.retain(|p| !(p.name == primitive.name && p.params.len() == primitive.params.len()));
        self.primitives.push(primitive);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Primitive> {
        self.primitives.iter()
    }

    /// The reference `tend api --format json` prints.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.primitives).unwrap_or_default()
    }

    /// The reference `tend api --format markdown` prints.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("| primitive | scope | returns | what it does |\n|---|---|---|---|\n");
        for p in &self.primitives {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                p.signature(),
                p.scope.map_or("—".to_owned(), |s| format!("`{s}`")),
                p.returns.replace('|', "\\|"),
                p.doc.replace('|', "\\|")
            ));
        }
        out
    }
}
