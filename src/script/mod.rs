//! The playbook runtime: one function builds the sandboxed Rhai engine from the site's
//! limits, primitives are registered from their declarations, and a run compiles the playbook
//! once, takes the site lock, executes, audits and writes its report.

mod diag;
mod imports;
pub mod primitives;
pub mod record;

use std::any::TypeId;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rhai::{AST, Dynamic, Engine, EvalAltResult, ImmutableString, NativeCallContext, Position, Scope as RhaiScope};
use serde_json::Value;

pub use imports::STDLIB;
use primitives::{Call, ParamType, Primitive, Registry};

use crate::error::{Error, ErrorKind, Result};
use crate::guard::Guard;
use crate::guard::audit::{AuditEntry, AuditWriter};
use crate::guard::auth::{Authorizer, Principal, Token};
use crate::guard::effects::{Effect, Plan};
use crate::guard::lock::RunLock;
use crate::report::{CallRecord, ReportError, RunReport};
use crate::site::{Limits, Site};

/// The value `on_progress` terminates with when the run is cancelled (Ctrl-C).
pub(crate) const INTERRUPTED: &str = "interrupted";
const TIMED_OUT: &str = "timeout";

/// A playbook: its text, the name diagnostics show, and the folder its imports come from.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    pub source: String,
    pub dir: PathBuf,
}

impl Playbook {
    pub fn from_file(path: &Path) -> Result<Playbook> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| Error::usage(format!("cannot read playbook {}: {e}", path.display())))?;
        let dir =
            path.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(Playbook { name: path.display().to_string(), source, dir })
    }

    /// A playbook held in memory; imports resolve from `dir`.
    pub fn from_source(name: impl Into<String>, source: impl Into<String>, dir: impl Into<PathBuf>) -> Playbook {
        Playbook { name: name.into(), source: source.into(), dir: dir.into() }
    }
}

/// How one run goes: who runs it, whether effects are only shown, and the playbook's `vars`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub token: Option<Token>,
    pub dry_run: bool,
    pub vars: BTreeMap<String, String>,
    /// Set to stop the playbook at its next operation (Ctrl-C).
    pub cancel: Option<Arc<AtomicBool>>,
    /// The clock policies are judged at (cooldowns); the system clock when `None`.
    pub now: Option<time::OffsetDateTime>,
    /// Draw progress bars (downloads) on stderr. The binary sets it only when stderr is a
    /// terminal and neither `--json` nor `-q` was given.
    pub progress: bool,
}

/// Runs playbooks against one site with a set of primitives.
#[derive(Debug, Clone)]
pub struct Runtime {
    site: Arc<Site>,
    registry: Registry,
}

impl Runtime {
    /// A runtime with tend's built-in primitives.
    pub fn new(site: Site) -> Runtime {
        let mut registry = Registry::default();
        for primitive in crate::ops::builtins() {
            registry.add(primitive);
        }
        Runtime { site: Arc::new(site), registry }
    }

    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Adds a primitive (or replaces the one with the same name and arity).
    pub fn register(&mut self, primitive: Primitive) -> &mut Runtime {
        self.registry.add(primitive);
        self
    }

    pub fn primitives(&self) -> &Registry {
        &self.registry
    }

    /// Compiles the playbook and every module it imports, running nothing.
    pub fn lint(&self, playbook: &Playbook) -> Result<()> {
        let mut engine = build_engine(&self.site.limits, Sandbox::unbounded());
        engine.set_module_resolver(imports::Imports::new(&playbook.dir, &playbook.source));
        self.compile(&engine, playbook).map(drop)
    }

    /// Compiles the playbook and resolves its imports into one AST, so that a syntax error or
    /// a refused import stops the run before it starts. A module's top level runs here and may
    /// only define functions and constants; errors point at the source.
    pub fn compile(&self, engine: &Engine, playbook: &Playbook) -> Result<AST> {
        let scope = vars_scope(&BTreeMap::new(), false);
        let source = playbook.source.as_str();
        let mut ast = engine.compile_into_self_contained(&scope, source).map_err(|err| {
            let described = self.describe(&err, playbook, None);
            if described.kind() != ErrorKind::Failed {
                return described;
            }
            // Only a module's top level runs while compiling.
            Error::new(
                ErrorKind::Syntax,
                format!(
                    "{}\nnote: imports load when the playbook is compiled; a module's top level may only define functions and constants",
                    described.message()
                ),
            )
        })?;
        ast.set_source(playbook.name.as_str());
        Ok(ast)
    }

    /// Runs a playbook. Errors before the run starts (syntax, token, lock) are `Err`; once it
    /// has started, the report says how it ended, and has been written under `<root>/reports/`.
    pub fn run(&self, playbook: &Playbook, options: RunOptions) -> Result<RunReport> {
        let started = time::OffsetDateTime::now_utc();
        let clock = Instant::now();
        let deadline = clock + self.site.limits.timeout.as_duration();
        let sandbox = Sandbox { deadline: Some(deadline), cancel: options.cancel.clone() };
        let mut engine = build_engine(&self.site.limits, sandbox);
        engine.set_module_resolver(imports::Imports::new(&playbook.dir, &playbook.source));
        let ast = self.compile(&engine, playbook)?;

        let principal = Authorizer::new(self.site.tokens.clone()).authenticate(options.token.as_ref())?;
        let guard = Guard::new(&self.site, options.dry_run);
        guard.prepare_root()?;
        let run_id = new_run_id(started)?;
        let _lock = RunLock::acquire(guard.jail(), guard.layout(), &format!("run {run_id}"))?;
        let mut audit = AuditWriter::open(guard.jail(), guard.layout())?;
        let vars_json = serde_json::to_value(&options.vars).unwrap_or_default();
        audit.append(&AuditEntry {
            run: run_id.clone(),
            token: principal.name().map(str::to_owned),
            primitive: "run.start".into(),
            args: serde_json::json!({ "playbook": playbook.name, "dry_run": options.dry_run, "vars": vars_json }),
            effects: Vec::new(),
            outcome: "ok".into(),
        })?;
        // Before anything else: finish or undo what an interrupted run left.
        let repaired = crate::ops::deploy::recover(&self.site, &guard)?;
        for message in &repaired {
            tracing::warn!("repaired: {message}");
            audit.append(&AuditEntry {
                run: run_id.clone(),
                token: principal.name().map(str::to_owned),
                primitive: "recover".into(),
                args: serde_json::json!({ "repaired": message }),
                effects: Vec::new(),
                outcome: "ok".into(),
            })?;
        }

        let state = Rc::new(RefCell::new(RunState {
            site: self.site.clone(),
            guard: guard.clone(),
            principal: principal.clone(),
            run_id: run_id.clone(),
            audit,
            calls: Vec::new(),
            last_call: None,
            now: options.now,
            progress: options.progress,
            line: options
                .progress
                .then(|| crate::progress::RunLine::new(self.site.servers().into_iter().map(|s| s.name).collect())),
        }));
        register_primitives(&mut engine, &self.registry, &state);
        let mut scope = vars_scope(&options.vars, true);
        let outcome = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast);
        drop(engine);
        let state = Rc::try_unwrap(state).map_err(|_| Error::failed("internal: run state still shared"))?.into_inner();
        let mut audit = state.audit;

        // `fail(message)` marks the run failed and lets it go on: its result is kept.
        let marked: Vec<&str> = state
            .calls
            .iter()
            .filter(|c| c.primitive == "fail" && c.ok)
            .filter_map(|c| c.args.first().and_then(Value::as_str))
            .collect();
        let (result, error) = match outcome {
            Ok(value) if !marked.is_empty() => (
                record::to_json(&value),
                Some(ReportError { kind: ErrorKind::Failed.as_str().into(), message: marked.join("\n"), exit_code: 1 }),
            ),
            Ok(value) => (record::to_json(&value), None),
            Err(err) => {
                let described = self.describe(&err, playbook, state.last_call.as_ref());
                (
                    Value::Null,
                    Some(ReportError {
                        kind: described.kind().as_str().into(),
                        message: described.message().into(),
                        exit_code: described.exit_code(),
                    }),
                )
            }
        };
        let ended = time::OffsetDateTime::now_utc();
        let report = RunReport {
            id: run_id.clone(),
            playbook: playbook.name.clone(),
            site: self.site.file.clone(),
            token: principal.name().map(str::to_owned),
            dry_run: options.dry_run,
            started: crate::clock::rfc3339(started),
            ended: crate::clock::rfc3339(ended),
            duration_ms: clock.elapsed().as_secs_f64() * 1000.0,
            outcome: if error.is_none() { "ok".into() } else { "failed".into() },
            error,
            result,
            calls: state.calls,
            path: guard.layout().report(&run_id),
        };
        audit.append(&AuditEntry {
            run: run_id.clone(),
            token: principal.name().map(str::to_owned),
            primitive: "run.end".into(),
            args: serde_json::json!({ "playbook": playbook.name, "calls": report.calls.len() }),
            effects: Vec::new(),
            outcome: report
                .error
                .as_ref()
                .map_or_else(|| "ok".to_owned(), |e| format!("{}: {}", e.kind, first_line(&e.message))),
        })?;
        if let Some(error) = report.error.as_ref().filter(|_| !options.dry_run) {
            let message = crate::ops::notify::Message::new(
                crate::site::Event::Failure,
                format!("run {} of {} failed: {}", report.id, report.playbook, first_line(&error.message)),
            );
            crate::ops::notify::deliver(&self.site, &run_id, false, &message);
        }
        let mut bytes = serde_json::to_vec_pretty(&report)
            .map_err(|e| Error::failed(format!("cannot encode the run report: {e}")))?;
        bytes.push(b'\n');
        guard.record(&Plan::new().with(Effect::WriteFile {
            path: report.path.clone(),
            contents: bytes,
            mode: 0o644,
        }))?;
        // Metrics are bookkeeping: a failure to write them is logged and the run stands.
        if let Err(e) = crate::ops::metrics::after_run(&self.site, &guard, &report) {
            tracing::warn!("cannot update the metrics: {}", e.message());
        }
        Ok(report)
    }

    /// Turns an engine error into a tend error pointing at the source (a module's, when the
    /// error happened inside one).
    fn describe(
        &self,
        err: &EvalAltResult,
        playbook: &Playbook,
        last_call: Option<&(Option<String>, Position)>,
    ) -> Error {
        let (root, source, mut pos) = diag::innermost(err);
        let (kind, message) = diag::runtime_error(root, &self.site.limits);
        let mut label = source.unwrap_or_else(|| playbook.name.clone());
        if pos.is_none() {
            if let Some((call_source, call_pos)) = last_call {
                pos = *call_pos;
                if let Some(s) = call_source {
                    label.clone_from(s);
                }
            }
        }
        let text = if label == playbook.name { Some(playbook.source.clone()) } else { imports::source_text(&label) };
        let rendered = match &text {
            Some(text) => diag::render(&message, Some(&diag::Source { name: &label, text }), pos),
            None => message,
        };
        Error::new(kind, rendered)
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn new_run_id(started: time::OffsetDateTime) -> Result<String> {
    let mut bytes = [0u8; 3];
    getrandom::fill(&mut bytes).map_err(|e| Error::failed(format!("cannot get random bytes: {e}")))?;
    Ok(format!("{}-{}", crate::clock::stamp(started), hex::encode(bytes)))
}

/// The wall-clock and cancellation bounds checked while a playbook runs.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    pub deadline: Option<Instant>,
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Sandbox {
    /// No deadline and no cancellation: for lint, benchmarks and tests.
    pub fn unbounded() -> Sandbox {
        Sandbox::default()
    }
}

/// Builds the sandboxed engine: every limit set from `limits`, a deadline and cancellation
/// through `on_progress`, `eval` disabled, strict variables, `print`/`debug` to the log.
/// Imports are refused until a resolver for the playbook's folder is set.
pub fn build_engine(limits: &Limits, sandbox: Sandbox) -> Engine {
    use rhai::packages::{
        BasicArrayPackage, BasicMapPackage, BasicMathPackage, CorePackage, LogicPackage, MoreStringPackage, Package,
    };
    // The packages a playbook needs; time, blob and bit-field functions are left out, which
    // halves the cost of building the engine.
    let mut engine = Engine::new_raw();
    for package in [
        CorePackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
    ] {
        engine.register_global_module(package);
    }
    let limit = |count: crate::site::Count| usize::try_from(count.0).unwrap_or(usize::MAX);
    engine
        .set_max_operations(limits.max_operations.0)
        .set_max_call_levels(limit(limits.max_call_levels))
        .set_max_expr_depths(limit(limits.max_expr_depth), limit(limits.max_expr_depth))
        .set_max_string_size(limit(limits.max_string_size))
        .set_max_array_size(limit(limits.max_array_size))
        .set_max_map_size(limit(limits.max_map_size))
        .set_max_modules(limit(limits.max_modules))
        .set_max_variables(limit(limits.max_variables))
        .set_max_functions(1_000)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true)
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new())
        .disable_symbol("eval");
    record::register(&mut engine);
    // `package` is reserved by Rhai for future use, but it is a field of tend's maps
    // (`servers()[0].package`): let playbooks use it as a name.
    #[allow(deprecated)] // `on_parse_token` is marked volatile, not deprecated
    engine.on_parse_token(|token, _, _| match token {
        rhai::Token::Reserved(word) if word.as_str() == "package" => rhai::Token::Identifier(word),
        other => other,
    });
    engine.on_print(|text| tracing::info!(target: "playbook", "{text}"));
    engine.on_debug(|text, source, pos| tracing::debug!(target: "playbook", "{}{pos:?}: {text}", source.map(|s| format!("{s}:")).unwrap_or_default()));
    let Sandbox { deadline, cancel } = sandbox;
    if deadline.is_some() || cancel.is_some() {
        engine.on_progress(move |ops| {
            if ops & 0x3ff != 0 {
                return None;
            }
            if cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Some(Dynamic::from(INTERRUPTED));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Some(Dynamic::from(TIMED_OUT));
            }
            None
        });
    }
    engine
}

/// The `vars` constant: `--var` values, as integers or booleans where they read as such.
/// At compile time `vars` is pushed as a variable, so the optimizer cannot fold the empty
/// map into the code; at run time it is a constant the playbook cannot change.
fn vars_scope(vars: &BTreeMap<String, String>, constant: bool) -> RhaiScope<'static> {
    let mut map = rhai::Map::new();
    for (key, value) in vars {
        let v = if let Ok(i) = value.parse::<rhai::INT>() {
            Dynamic::from(i)
        } else if let Ok(b) = value.parse::<bool>() {
            Dynamic::from(b)
        } else {
            Dynamic::from(value.clone())
        };
        map.insert(key.as_str().into(), v);
    }
    let mut scope = RhaiScope::new();
    if constant {
        scope.push_constant("vars", map);
    } else {
        scope.push("vars", map);
    }
    scope
}

/// Everything a run's primitives share.
struct RunState {
    site: Arc<Site>,
    guard: Guard,
    principal: Principal,
    run_id: String,
    audit: AuditWriter,
    calls: Vec<CallRecord>,
    last_call: Option<(Option<String>, Position)>,
    now: Option<time::OffsetDateTime>,
    progress: bool,
    /// The run's progress line on a terminal.
    line: Option<crate::progress::RunLine>,
}

fn type_id(ty: ParamType) -> TypeId {
    match ty {
        ParamType::String => TypeId::of::<ImmutableString>(),
        ParamType::Int => TypeId::of::<rhai::INT>(),
        ParamType::Bool => TypeId::of::<bool>(),
        ParamType::Map => TypeId::of::<rhai::Map>(),
        ParamType::Array => TypeId::of::<rhai::Array>(),
        ParamType::Any => TypeId::of::<Dynamic>(),
    }
}

/// Registers each declared primitive: scope check, body, audit record, report entry.
fn register_primitives(engine: &mut Engine, registry: &Registry, state: &Rc<RefCell<RunState>>) {
    for primitive in registry.iter() {
        let types: Vec<TypeId> = primitive.params.iter().map(|p| type_id(p.ty)).collect();
        let primitive = primitive.clone();
        let state = Rc::clone(state);
        engine.register_raw_fn(
            primitive.name.clone(),
            types,
            move |ctx: NativeCallContext, args: &mut [&mut Dynamic]| {
                let mut state = state.borrow_mut();
                state.last_call = Some((ctx.call_source().map(str::to_owned), ctx.call_position()));
                invoke(&primitive, &mut state, args)
            },
        );
    }
}

fn invoke(
    primitive: &Primitive,
    state: &mut RunState,
    args: &mut [&mut Dynamic],
) -> Result<Dynamic, Box<EvalAltResult>> {
    // A dry run applies no effect, so it needs no scope: anyone may see what would happen.
    if let Some(scope) = primitive.scope.filter(|_| !state.guard.dry_run()) {
        state.principal.require(scope, &format!("{}()", primitive.name)).map_err(system)?;
    }
    let values: Vec<Value> = args.iter().map(|a| record::to_json(a)).collect();
    if let Some(line) = &mut state.line {
        line.step(&primitive.name, values.first().and_then(Value::as_str));
    }
    let clock = Instant::now();
    let RunState { site, guard, principal, run_id, .. } = &*state;
    let mut call = Call {
        site,
        guard,
        principal,
        run_id,
        now: state.now.unwrap_or_else(time::OffsetDateTime::now_utc),
        progress: state.progress,
        effects: Vec::new(),
    };
    let result = (primitive.body)(&mut call, values.clone());
    let effects = std::mem::take(&mut call.effects);
    let duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
    if primitive.scope.is_some() {
        let entry = AuditEntry {
            run: state.run_id.clone(),
            token: state.principal.name().map(str::to_owned),
            primitive: primitive.name.clone(),
            args: Value::Array(values.clone()),
            effects: effects.clone(),
            outcome: match &result {
                Ok(_) => "ok".into(),
                Err(e) => format!("{}: {}", e.kind().as_str(), e.message()),
            },
        };
        state.audit.append(&entry).map_err(system)?;
    }
    state.calls.push(CallRecord {
        primitive: primitive.name.clone(),
        args: values,
        ok: result.is_ok(),
        result: result.as_ref().ok().cloned().unwrap_or(Value::Null),
        error: result.as_ref().err().map(|e| e.message().to_owned()),
        effects,
        duration_ms,
    });
    match result {
        Ok(value) => Ok(record::to_dynamic(value)),
        Err(err) if matches!(err.kind(), ErrorKind::Unauthorized | ErrorKind::Policy | ErrorKind::Locked) => {
            Err(system(err))
        }
        Err(err) => {
            let mut map = rhai::Map::new();
            map.insert("kind".into(), err.kind().as_str().into());
            map.insert("message".into(), err.message().into());
            map.insert("server".into(), err.server().map_or(Dynamic::UNIT, |s| Dynamic::from(s.to_owned())));
            Err(Box::new(EvalAltResult::ErrorRuntime(map.into(), Position::NONE)))
        }
    }
}

/// An error no `try`/`catch` can hold: the run stops with the error's exit code.
fn system(err: Error) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorSystem(String::new(), Box::new(err)))
}
