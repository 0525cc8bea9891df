//! Diagnostics that point at the source: `path:line:col`, the line, and a caret under the
//! problem, for syntax errors and for runtime errors (inside imported modules too).

use rhai::{EvalAltResult, ParseErrorType, Position};

use crate::error::{Error, ErrorKind};

/// Where an error happened: a file name as shown to the user, and its text.
pub(crate) struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// The message with a `-->` pointer and the source line under it, when the position is known.
pub(crate) fn render(message: &str, source: Option<&Source<'_>>, pos: Position) -> String {
    let (Some(source), Some(line)) = (source, pos.line()) else {
        return match source {
            Some(s) => format!("{message}\n  --> {}", s.name),
            None => message.to_owned(),
        };
    };
    let col = pos.position().unwrap_or(1).max(1);
    let text = source.text.lines().nth(line - 1).unwrap_or("");
    let width = line.to_string().len();
    let pad = " ".repeat(width);
    let caret_pad: String = text.chars().take(col - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
    format!("{message}\n{pad}--> {}:{line}:{col}\n{pad} |\n{line} | {text}\n{pad} | {caret_pad}^", source.name)
}

/// Maps a parse error to its kind and words: limits of the sandbox are policy, the rest syntax.
pub(crate) fn parse_error(err: &ParseErrorType, max_depth: u64) -> (ErrorKind, String) {
    match err {
        ParseErrorType::ExprTooDeep => (
            ErrorKind::Policy,
            format!("sandbox limit: expression nested deeper than {max_depth} levels ([limits] max_expr_depth)"),
        ),
        ParseErrorType::Reserved(word) if word == "eval" => {
            (ErrorKind::Policy, "sandbox: `eval` is disabled in playbooks".to_owned())
        }
        ParseErrorType::BadInput(token) if token.to_string().contains("eval") => {
            (ErrorKind::Policy, "sandbox: `eval` is disabled in playbooks".to_owned())
        }
        other => (ErrorKind::Syntax, format!("syntax error: {}", strip_position(&other.to_string()))),
    }
}

/// Rhai's messages end in ` (line N, position M)`; tend shows positions its own way.
pub(crate) fn strip_position(text: &str) -> String {
    match text.rfind(" (line ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text.to_owned(),
    }
}

/// The innermost error of a chain, the source it happened in (a module path or a function's
/// source), and its position.
pub(crate) fn innermost(err: &EvalAltResult) -> (&EvalAltResult, Option<String>, Position) {
    let mut source: Option<String> = None;
    let mut pos = err.position();
    let mut current = err;
    loop {
        match current {
            EvalAltResult::ErrorInModule(path, inner, at) => {
                // An import refused before any module text was read has no path of its own:
                // it points at the `import` statement.
                if path.is_empty() {
                    pos = *at;
                } else {
                    source = Some(path.clone());
                    pos = inner.position();
                }
                current = inner;
            }
            EvalAltResult::ErrorInFunctionCall(_, fn_source, inner, _) => {
                if !fn_source.is_empty() {
                    source = Some(fn_source.clone());
                }
                if !inner.position().is_none() {
                    pos = inner.position();
                }
                current = inner;
            }
            _ => return (current, source, pos),
        }
    }
}

/// The kind and message of a runtime error (without its location).
pub(crate) fn runtime_error(err: &EvalAltResult, limits: &crate::site::Limits) -> (ErrorKind, String) {
    use EvalAltResult as E;
    match err {
        E::ErrorTooManyOperations(_) => (
            ErrorKind::Policy,
            format!(
                "sandbox limit: the playbook ran more than {} operations ([limits] max_operations)",
                limits.max_operations.0
            ),
        ),
        E::ErrorStackOverflow(_) => (
            ErrorKind::Policy,
            format!(
                "sandbox limit: function calls nested deeper than {} levels ([limits] max_call_levels)",
                limits.max_call_levels.0
            ),
        ),
        E::ErrorDataTooLarge(what, _) => (
            ErrorKind::Policy,
            format!(
                "sandbox limit: {} is over its limit ([limits] max_string_size, max_array_size, max_map_size)",
                what.to_lowercase()
            ),
        ),
        E::ErrorTooManyModules(_) => (
            ErrorKind::Policy,
            format!("sandbox limit: more than {} modules loaded ([limits] max_modules)", limits.max_modules.0),
        ),
        E::ErrorTooManyVariables(_) => (
            ErrorKind::Policy,
            format!("sandbox limit: more than {} variables ([limits] max_variables)", limits.max_variables.0),
        ),
        E::ErrorTerminated(token, _) if token.to_string() == super::INTERRUPTED => {
            (ErrorKind::Failed, "interrupted".to_owned())
        }
        E::ErrorTerminated(..) => (
            ErrorKind::Policy,
            format!("sandbox limit: the playbook ran longer than its timeout of {} ([limits] timeout)", limits.timeout),
        ),
        E::ErrorSystem(_, inner) => match inner.downcast_ref::<Error>() {
            Some(e) => (e.kind(), e.message().to_owned()),
            None => (ErrorKind::Failed, inner.to_string()),
        },
        E::ErrorParsing(p, _) => parse_error(p, limits.max_expr_depth.0),
        E::ErrorRuntime(value, _) => {
            // A primitive's error map, uncaught: its own message says it all.
            if let Some(message) =
                value.clone().try_cast::<rhai::Map>().and_then(|m| m.get("message").map(ToString::to_string))
            {
                return (ErrorKind::Failed, message);
            }
            (ErrorKind::Failed, format!("uncaught error: {value}"))
        }
        other => (ErrorKind::Failed, strip_position(&other.to_string())),
    }
}
