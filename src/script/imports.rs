//! Module resolution for `import`: a playbook may import only from its own folder and from
//! tend's stdlib (shipped inside the binary from `stdlib/`). A path that leaves the folder, by
//! `..`, an absolute path or a symlink, is a policy violation.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use crate::error::Error;
use crate::guard::jail::normalize;

/// The stdlib modules, compiled into the binary: (`name`, source).
pub const STDLIB: &[(&str, &str)] = &[
    ("analysis", include_str!("../../stdlib/analysis.rhai")),
    ("report", include_str!("../../stdlib/report.rhai")),
    ("rollout", include_str!("../../stdlib/rollout.rhai")),
];

/// What a diagnostic shows for a stdlib module.
pub(crate) fn stdlib_label(name: &str) -> String {
    format!("stdlib/{name}.rhai")
}

/// Resolves imports for one run (or lint), caching each module once.
pub(crate) struct Imports {
    dir: PathBuf,
    /// The playbook's text: imports resolved while compiling arrive without a position, and
    /// are found in it to point at the `import` statement.
    playbook: String,
    cache: RefCell<HashMap<String, Shared<Module>>>,
}

impl Imports {
    pub fn new(dir: &Path, playbook: &str) -> Imports {
        let dir = dir.canonicalize().unwrap_or_else(|_| normalize(dir));
        Imports { dir, playbook: playbook.to_owned(), cache: RefCell::new(HashMap::new()) }
    }

    /// Where `import "path"` stands in the playbook, for an import resolved at compile time.
    fn position_of(&self, path: &str) -> Position {
        let needle = format!("\"{path}\"");
        self.playbook
            .lines()
            .enumerate()
            .find_map(|(i, line)| {
                let at = line.find(&needle)?;
                line[..at]
                    .contains("import")
                    .then(|| Position::new(i as u16 + 1, line[..at].chars().count() as u16 + 1))
            })
            .unwrap_or(Position::NONE)
    }

    /// Finds the file or stdlib module `path` names: (label for diagnostics, source text).
    fn locate(&self, path: &str) -> Result<Option<(String, String)>, Error> {
        let file = if Path::new(path).extension().is_some() { path.to_owned() } else { format!("{path}.rhai") };
        let joined = self.dir.join(&file);
        let escapes = || {
            Error::policy(format!(
                "import `{path}` is outside the playbook's folder {}; imports resolve only from that folder and stdlib/",
                self.dir.display()
            ))
        };
        if Path::new(path).is_absolute() || !normalize(&joined).starts_with(&self.dir) {
            return Err(escapes());
        }
        if joined.is_file() {
            let real = joined.canonicalize().map_err(|e| Error::io("read", &joined, e))?;
            if !real.starts_with(&self.dir) {
                return Err(escapes());
            }
            let text = std::fs::read_to_string(&real).map_err(|e| Error::io("read", &real, e))?;
            return Ok(Some((joined.display().to_string(), text)));
        }
        Ok(STDLIB.iter().find(|(name, _)| *name == path).map(|(name, text)| (stdlib_label(name), (*text).to_owned())))
    }
}

impl ModuleResolver for Imports {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let pos = if pos.is_none() { self.position_of(path) } else { pos };
        if let Some(module) = self.cache.borrow().get(path) {
            return Ok(module.clone());
        }
        let (label, text) = match self.locate(path) {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(Box::new(EvalAltResult::ErrorModuleNotFound(path.to_owned(), pos)));
            }
            Err(e) => {
                let refused = Box::new(EvalAltResult::ErrorSystem(String::new(), Box::new(e)));
                return Err(Box::new(EvalAltResult::ErrorInModule(String::new(), refused, pos)));
            }
        };
        let in_module = |err: Box<EvalAltResult>| Box::new(EvalAltResult::ErrorInModule(label.clone(), err, pos));
        let mut ast = engine.compile(&text).map_err(|e| in_module(e.into()))?;
        ast.set_source(label.as_str());
        let module: Shared<Module> = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?.into();
        self.cache.borrow_mut().insert(path.to_owned(), module.clone());
        Ok(module)
    }
}

/// The text of a source a diagnostic names: a playbook or module file, or a stdlib module.
pub(crate) fn source_text(label: &str) -> Option<String> {
    if let Some(name) = label.strip_prefix("stdlib/").and_then(|n| n.strip_suffix(".rhai")) {
        if let Some((_, text)) = STDLIB.iter().find(|(n, _)| *n == name) {
            return Some((*text).to_owned());
        }
    }
    std::fs::read_to_string(label).ok()
}
