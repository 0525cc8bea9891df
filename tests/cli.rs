//! tend, driven as a user drives it: the built binary in a temp site (and, for what the CLI
//! cannot reach yet, the library's runtime with a primitive declared by the test).

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

mod util;

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};
use tend::guard::effects::{Effect, Plan};
use tend::{ParamType, Playbook, Primitive, RunOptions, Runtime, Scope, Site, Token};
use util::{TEND, Test};

// ---------------------------------------------------------------- running playbooks

#[test]
fn a_playbook_runs_sees_vars_and_writes_a_report_and_audit_records() {
    let done = Test::new()
        .file("p.rhai", "print(`hello ${vars.who}`);\nlet n = vars.n + 1;\n#{ n: n, dry: dry_run() }\n")
        .args(&["run", "p.rhai", "--var", "who=world", "--var", "n=41"])
        .stderr_contains(" INFO playbook: hello world\n")
        .run();
    let reports = done.reports();
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["result"], serde_json::json!({ "n": 42, "dry": false }));
    assert_eq!(report["calls"][0]["primitive"], "dry_run");
    assert!(done.stdout().starts_with(&format!("run {} ok: p.rhai in ", report["id"].as_str().unwrap())));
    let audit = done.audit_lines();
    assert_eq!(audit.len(), 2);
    assert!(audit[0].contains("\"primitive\":\"run.start\"") && audit[1].contains("\"primitive\":\"run.end\""));
}

#[test]
fn json_prints_exactly_one_document_on_stdout() {
    let done = Test::new()
        .file("p.rhai", "print(\"to the log, not stdout\");\n1 + 1\n")
        .args(&["--json", "run", "p.rhai"])
        .run();
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).expect("stdout is one JSON document");
    assert_eq!(doc["result"], 2);
    assert_eq!(doc["outcome"], "ok");
}

#[test]
fn servers_come_from_the_client_configs_with_their_npm_packages() {
    let done = Test::new()
        .file(
            ".mcp.json",
            r#"{"mcpServers": {
                "memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory@2025.4.25"]},
                "git": {"command": "uvx", "args": ["mcp-server-git"]}
            }}"#,
        )
        .file("p.rhai", "servers()\n")
        .args(&["--json", "run", "p.rhai"])
        .run();
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    let client = done.path().join(".mcp.json").display().to_string();
    assert_eq!(
        doc["result"],
        serde_json::json!([
            {"name": "memory", "package": "@modelcontextprotocol/server-memory", "current": "2025.4.25", "managed": false, "client": client},
            {"name": "git", "package": null, "current": null, "managed": false, "client": client},
        ])
    );
}

#[test]
fn site_shows_per_server_overrides_merged() {
    let done = Test::new()
        .site("[policy]\nmin_release_age = \"1d\"\n[servers.memory]\npackage = \"@modelcontextprotocol/server-memory\"\n[servers.memory.policy]\nallow_major = true\n")
        .file("p.rhai", "let s = site();\n[s.servers.memory.policy.allow_major, s.servers.memory.policy.min_release_age, s.policy.allow_major]\n")
        .args(&["--json", "run", "p.rhai"])
        .run();
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(doc["result"], serde_json::json!([true, "1d", false]));
}

#[test]
fn a_thrown_error_fails_the_run_with_exit_1() {
    Test::new()
        .file("p.rhai", "let x = 1;\nthrow \"bad thing\";\n")
        .args(&["-q", "run", "p.rhai"])
        .status(1)
        .stderr("error: uncaught error: bad thing\n --> p.rhai:2:1\n  |\n2 | throw \"bad thing\";\n  | ^\n")
        .run();
}

#[test]
fn lint_checks_playbooks_and_their_imports_without_running_them() {
    Test::new()
        .file("lib/helpers.rhai", "fn twice(x) { x * 2 }\n")
        .file("lib/main.rhai", "import \"helpers\" as h;\nimport \"report\" as report;\nh::twice(2)\n")
        .file("broken.rhai", "let = 3;\n")
        .args(&["lint", "lib/main.rhai", "broken.rhai"])
        .status(2)
        .stdout("lib/main.rhai: ok\n")
        .stderr(
            "error: syntax error: Expecting name of a variable\n --> broken.rhai:1:5\n  |\n1 | let = 3;\n  |     ^\n",
        )
        .unchanged()
        .run();
}

#[test]
fn api_lists_every_declared_primitive() {
    let done = Test::new().args(&["api", "--format", "json"]).run();
    let api: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    let names: Vec<&str> = api.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "servers",
            "site",
            "dry_run",
            "log",
            "notify",
            "notify",
            "fail",
            "check",
            "check_all",
            "prune",
            "prune",
            "stage",
            "stage",
            "health",
            "health",
            "approve",
            "adopt",
            "swap",
            "monitor",
            "monitor",
            "rollback",
            "rollback"
        ]
    );
    assert_eq!(api[10]["scope"], "prune");
    assert_eq!(
        api[3]["params"],
        serde_json::json!([{"name": "level", "type": "string"}, {"name": "message", "type": "string"}])
    );
    let md = Test::new().args(&["api"]).run().stdout();
    assert!(md.starts_with("| primitive | scope | returns | what it does |\n"), "{md}");
    assert!(md.contains("| `log(level: string, message: string)` | — | () |"), "{md}");
}

#[test]
fn completions_are_printed() {
    let out = Test::new().args(&["completions", "bash"]).run().stdout();
    assert!(out.contains("_tend()"), "{out}");
}

// ---------------------------------------------------------------- bad playbooks

#[test]
fn syntax_error_points_at_the_source_and_changes_nothing() {
    Test::new()
        .file("p.rhai", "let x = 1;\nlet y = x +;\n")
        .args(&["run", "p.rhai"])
        .status(2)
        .stderr("error: syntax error: Unexpected ';'\n --> p.rhai:2:12\n  |\n2 | let y = x +;\n  |            ^\n")
        .unchanged()
        .run();
}

#[test]
fn an_endless_loop_hits_the_operation_limit() {
    let done = Test::new()
        .site("[limits]\nmax_operations = 100000\n")
        .file("p.rhai", "let n = 0;\nloop { n += 1; }\n")
        .args(&["-q", "run", "p.rhai"])
        .status(5)
        .stderr("error: sandbox limit: the playbook ran more than 100000 operations ([limits] max_operations)\n --> p.rhai:2:13\n  |\n2 | loop { n += 1; }\n  |             ^\n")
        .unchanged_but_bookkeeping()
        .run();
    let report = &done.reports()[0];
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["error"]["exit_code"], 5);
    assert!(
        done.audit_lines()[1]
            .contains("\"outcome\":\"policy: sandbox limit: the playbook ran more than 100000 operations")
    );
}

#[test]
fn an_endless_loop_hits_the_wall_clock_timeout() {
    Test::new()
        .site("[limits]\nmax_operations = 0\ntimeout = \"300ms\"\n")
        .file("p.rhai", "loop {}\n")
        .args(&["-q", "run", "p.rhai"])
        .status(5)
        .stderr_contains("error: sandbox limit: the playbook ran longer than its timeout of 300ms ([limits] timeout)\n")
        .unchanged_but_bookkeeping()
        .run();
}

#[test]
fn unbounded_recursion_hits_the_call_depth_limit() {
    Test::new()
        .file("p.rhai", "fn down(n) { down(n + 1) }\ndown(0)\n")
        .args(&["-q", "run", "p.rhai"])
        .status(5)
        .stderr("error: sandbox limit: function calls nested deeper than 64 levels ([limits] max_call_levels)\n --> p.rhai:2:1\n  |\n2 | down(0)\n  | ^\n")
        .unchanged_but_bookkeeping()
        .run();
}

#[test]
fn a_string_doubled_without_end_hits_the_size_limit() {
    Test::new()
        .file("p.rhai", "let s = \"x\";\nloop { s += s; }\n")
        .args(&["-q", "run", "p.rhai"])
        .status(5)
        .stderr("error: sandbox limit: length of string is over its limit ([limits] max_string_size, max_array_size, max_map_size)\n --> p.rhai:2:10\n  |\n2 | loop { s += s; }\n  |          ^\n")
        .unchanged_but_bookkeeping()
        .run();
}

#[test]
fn an_array_grown_without_end_hits_the_size_limit() {
    Test::new()
        .file("p.rhai", "let a = [];\nloop { a.push(1); }\n")
        .args(&["-q", "run", "p.rhai"])
        .status(5)
        .stderr("error: sandbox limit: size of array/blob is over its limit ([limits] max_string_size, max_array_size, max_map_size)\n --> p.rhai:2:10\n  |\n2 | loop { a.push(1); }\n  |          ^\n")
        .unchanged_but_bookkeeping()
        .run();
}

#[test]
fn a_deeply_nested_expression_is_refused_before_the_run() {
    let source = format!("let x = {}1{};\n", "(".repeat(100), ")".repeat(100));
    Test::new()
        .file("p.rhai", &source)
        .args(&["run", "p.rhai"])
        .status(5)
        .stderr_contains(
            "error: sandbox limit: expression nested deeper than 64 levels ([limits] max_expr_depth)\n --> p.rhai:1:",
        )
        .unchanged()
        .run();
}

#[test]
fn an_import_outside_the_playbook_folder_is_refused_before_the_run() {
    Test::new()
        .file("outside.rhai", "fn f() { 1 }\n")
        .file("books/p.rhai", "import \"../outside\" as o;\no::f()\n")
        .args(&["run", "books/p.rhai"])
        .status(5)
        .stderr("error: import `../outside` is outside the playbook's folder {dir}/books; imports resolve only from that folder and stdlib/\n --> books/p.rhai:1:8\n  |\n1 | import \"../outside\" as o;\n  |        ^\n")
        .unchanged()
        .run();
}

#[test]
fn an_import_through_a_symlink_out_of_the_folder_is_refused() {
    let test =
        Test::new().file("outside/m.rhai", "fn f() { 1 }\n").file("books/p.rhai", "import \"m\" as m;\nm::f()\n");
    std::os::unix::fs::symlink(test.path().join("outside/m.rhai"), test.path().join("books/m.rhai")).unwrap();
    test.args(&["run", "books/p.rhai"])
        .status(5)
        .stderr_contains("error: import `m` is outside the playbook's folder {dir}/books;")
        .unchanged()
        .run();
}

#[test]
fn eval_is_disabled() {
    Test::new()
        .file("p.rhai", "let x = 1;\neval(\"x + 1\")\n")
        .args(&["run", "p.rhai"])
        .status(5)
        .stderr("error: sandbox: `eval` is disabled in playbooks\n --> p.rhai:2:1\n  |\n2 | eval(\"x + 1\")\n  | ^\n")
        .unchanged()
        .run();
}

#[test]
fn a_runtime_error_inside_an_imported_module_points_into_the_module() {
    Test::new()
        .file("books/tools.rhai", "fn boom(x) {\n    let y = x;\n    y.no_such_method()\n}\n")
        .file("books/p.rhai", "import \"tools\" as t;\nt::boom(1)\n")
        .args(&["-q", "run", "books/p.rhai"])
        .status(1)
        .stderr("error: Function not found: no_such_method (i64)\n --> {dir}/books/tools.rhai:3:7\n  |\n3 |     y.no_such_method()\n  |       ^\n")
        .unchanged_but_bookkeeping()
        .run();
}

#[test]
fn a_missing_playbook_is_a_usage_error() {
    Test::new()
        .args(&["run", "nope.rhai"])
        .status(2)
        .stderr("error: cannot read playbook nope.rhai: No such file or directory (os error 2)\n")
        .unchanged()
        .run();
}

#[test]
fn ctrl_c_stops_the_playbook_at_its_next_operation() {
    let test = Test::new().site("[limits]\nmax_operations = 0\n").file("p.rhai", "loop {}\n");
    std::fs::write(
        test.path().join("tend.toml"),
        format!("root = \"{}/root\"\n[limits]\nmax_operations = 0\n", test.path().display()),
    )
    .unwrap();
    let child = Command::new(TEND)
        .args(["-q", "run", "p.rhai"])
        .current_dir(test.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lock_holder(test.path());
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::INT).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: interrupted\n"));
}

// ---------------------------------------------------------------- bad tend.toml

#[test]
fn site_unknown_key() {
    Test::new()
        .site("[retention]\nkeep_forever = true\n")
        .file("p.rhai", "1\n")
        .args(&["run", "p.rhai"])
        .status(2)
        .stderr_contains("error: {dir}/tend.toml:3:1: `retention.keep_forever`: unknown field `keep_forever`, expected one of `staging_days`, ")
        .unchanged()
        .run();
}

#[test]
fn site_wrong_type() {
    Test::new()
        .site("[policy]\nallow_major = \"yes\"\n")
        .file("p.rhai", "1\n")
        .args(&["run", "p.rhai"])
        .status(2)
        .stderr("error: {dir}/tend.toml:3:15: `policy.allow_major`: invalid type: string \"yes\", expected a boolean\n")
        .unchanged()
        .run();
}

#[test]
fn site_negative_retention() {
    Test::new()
        .site("[retention]\nkeep_backups = -3\n")
        .file("p.rhai", "1\n")
        .args(&["run", "p.rhai"])
        .status(2)
        .stderr("error: {dir}/tend.toml:3:16: `retention.keep_backups`: must be 0 or more, found -3\n")
        .unchanged()
        .run();
}

#[test]
fn site_bad_duration() {
    Test::new()
        .site("[monitor]\ninterval = \"10 seconds\"\n")
        .file("p.rhai", "1\n")
        .args(&["run", "p.rhai"])
        .status(2)
        .stderr("error: {dir}/tend.toml:3:12: `monitor.interval`: invalid duration `10 seconds`: expected a number followed by ms, s, m, h or d (for example `3d` or `1h30m`)\n")
        .unchanged()
        .run();
}

#[test]
fn site_file_given_with_site_flag_is_missing() {
    Test::new()
        .file("p.rhai", "1\n")
        .args(&["--site", "missing.toml", "run", "p.rhai"])
        .status(2)
        .stderr("error: cannot read site file {dir}/missing.toml: No such file or directory (os error 2)\n")
        .unchanged()
        .run();
}

#[test]
fn site_client_config_that_is_not_json() {
    Test::new()
        .file(".mcp.json", "{\n  \"mcpServers\": {\n    \"memory\": { \"command\": \"npx\", }\n  }\n}\n")
        .file("p.rhai", "1\n")
        .args(&["run", "p.rhai"])
        .status(2)
        .stderr("error: {dir}/.mcp.json:3:35: invalid JSON: trailing comma\n")
        .unchanged()
        .run();
}

#[test]
fn site_token_line_with_a_short_hash() {
    Test::new()
        .site("[auth]\ntokens = [{ name = \"cron\", sha256 = \"0123abcd\", scopes = [\"stage\"] }]\n")
        .file("p.rhai", "1\n")
        .args(&["run", "p.rhai"])
        .status(2)
        .stderr("error: {dir}/tend.toml:3:37: `auth.tokens[0].sha256`: expected the SHA-256 of the token as 64 hex digits, found 8 characters\n")
        .unchanged()
        .run();
}

#[test]
fn site_unknown_scope() {
    Test::new()
        .site(&format!("[auth]\ntokens = [{{ name = \"cron\", sha256 = \"{}\", scopes = [\"root\"] }}]\n", "a".repeat(64)))
        .file("p.rhai", "1\n")
        .args(&["run", "p.rhai"])
        .status(2)
        .stderr_contains("`auth.tokens[0].scopes[0]`: unknown variant `root`, expected one of `stage`, `deploy`, `rollback`, `prune`\n")
        .unchanged()
        .run();
}

#[test]
fn site_unknown_burst_method() {
    Test::new()
        .site("[servers.memory.probe]\nburst_method = \"tools/call\"\n")
        .file("p.rhai", "1\n")
        .args(&["run", "p.rhai"])
        .status(2)
        .stderr("error: {dir}/tend.toml:3:16: `servers.memory.probe.burst_method`: unknown variant `tools/call`, expected one of `ping`, `tools/list`, `resources/list`, `prompts/list`\n")
        .unchanged()
        .run();
}

// ---------------------------------------------------------------- tokens

const SECRET: &str = "tend_0123456789abcdef0123456789abcdef";

fn token_line(scopes: &str) -> String {
    format!(
        "[auth]\ntokens = [{{ name = \"cron\", sha256 = \"{}\", scopes = [{scopes}] }}]\n",
        hex::encode(Sha256::digest(SECRET))
    )
}

#[test]
fn token_new_prints_a_token_whose_sha256_is_the_line_it_prints() {
    let done = Test::new().args(&["--json", "token", "new", "--name", "cron", "--scopes", "stage,deploy"]).run();
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    let token = doc["token"].as_str().unwrap();
    assert!(token.starts_with("tend_") && token.len() == 5 + 64, "{token}");
    let digest = hex::encode(Sha256::digest(token));
    assert_eq!(doc["toml"], format!("{{ name = \"cron\", sha256 = \"{digest}\", scopes = [\"stage\", \"deploy\"] }}"));
    let again = Test::new().args(&["token", "new", "--name", "x", "--scopes", "prune"]).run().stdout();
    assert_ne!(again.trim(), token);
    Test::new()
        .args(&["token", "new", "--name", "x", "--scopes", "sudo"])
        .status(2)
        .stderr("error: unknown scope `sudo`; scopes are stage, deploy, rollback, prune\n")
        .run();
}

#[test]
fn the_right_token_runs_under_its_name_and_never_appears_anywhere() {
    let done = Test::new()
        .site(&token_line("\"stage\""))
        .file("token", &format!("{SECRET}\n"))
        .file("p.rhai", "print(\"hi\");\n1\n")
        .args(&["-v", "--token-file", "token", "run", "p.rhai"])
        .run();
    assert!(done.audit_lines()[0].contains("\"token\":\"cron\""));
    assert_eq!(done.reports()[0]["token"], "cron");
    let stderr = String::from_utf8_lossy(&done.output.stderr);
    assert!(!stderr.contains(SECRET) && !done.stdout().contains(SECRET));
    for (path, _) in util::snapshot(&done.path().join("root")) {
        let text = std::fs::read_to_string(done.path().join("root").join(&path)).unwrap_or_default();
        assert!(!text.contains(SECRET), "{path} holds the token");
    }
}

#[test]
fn token_from_the_environment() {
    let done = Test::new()
        .site(&token_line("\"prune\""))
        .file("p.rhai", "1\n")
        .env("TEND_TOKEN", SECRET)
        .args(&["run", "p.rhai"])
        .run();
    assert_eq!(done.reports()[0]["token"], "cron");
}

#[test]
fn wrong_empty_and_prefix_tokens_exit_4_and_change_nothing() {
    for (bad, message) in [
        ("tend_wrong", "error: the token does not match any token in [auth]\n"),
        ("", "error: the token is empty\n"),
        (&SECRET[..20], "error: the token does not match any token in [auth]\n"),
        (&format!("{SECRET}x"), "error: the token does not match any token in [auth]\n"),
    ] {
        Test::new()
            .site(&token_line("\"stage\""))
            .file("token", bad)
            .file("p.rhai", "1\n")
            .args(&["--token-file", "token", "run", "p.rhai"])
            .status(4)
            .stderr(message)
            .unchanged()
            .run();
    }
    Test::new()
        .site(&token_line("\"stage\""))
        .file("p.rhai", "1\n")
        .args(&["--token-file", "missing", "run", "p.rhai"])
        .status(4)
        .stderr("error: cannot read token file missing: No such file or directory (os error 2)\n")
        .unchanged()
        .run();
}

// ---------------------------------------------------------------- the guard, through the library

/// A site in `dir` whose root is `dir/root`, with a client config and one token.
fn library_site(dir: &Path, scopes: &str) -> Site {
    if !dir.join(".mcp.json").exists() {
        std::fs::write(dir.join(".mcp.json"), "{\"mcpServers\": {}}\n").unwrap();
    }
    let text = format!("root = \"root\"\nclients = [\".mcp.json\"]\n{}", token_line(scopes));
    Site::from_toml_str(&text, dir, Some(&dir.join("tend.toml"))).unwrap()
}

/// A mutating primitive that writes `path` (as given by the playbook) with the `stage` scope;
/// `declare` names a protected file it declares.
fn writer(declare: Option<std::path::PathBuf>) -> Primitive {
    Primitive::new("write_file", "()", "writes a file (test primitive)")
        .param("path", ParamType::String)
        .scope(Scope::Stage)
        .body(move |call, args| {
            let path = std::path::PathBuf::from(args[0].as_str().unwrap());
            let mut plan = Plan::new().with(Effect::WriteFile { path, contents: b"written".to_vec(), mode: 0o644 });
            if let Some(d) = &declare {
                plan = plan.declaring(d.clone());
            }
            call.execute(&plan)?;
            Ok(serde_json::Value::Null)
        })
}

fn run_writer(
    dir: &Path,
    scopes: &str,
    token: Option<&str>,
    declare: Option<std::path::PathBuf>,
    source: &str,
    dry_run: bool,
) -> tend::Result<tend::RunReport> {
    let mut runtime = Runtime::new(library_site(dir, scopes));
    runtime.register(writer(declare));
    let options = RunOptions { token: token.map(Token::new), dry_run, ..RunOptions::default() };
    runtime.run(&Playbook::from_source("p.rhai", source, dir), options)
}

#[test]
fn a_mutating_primitive_needs_its_scope_and_try_catch_cannot_hide_that() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("root/x.txt");
    let source = format!("try {{ write_file(\"{}\"); }} catch (e) {{ print(\"caught\"); }}\n", target.display());
    let no_token = run_writer(dir.path(), "\"stage\"", None, None, &source, false).unwrap();
    let err = no_token.error.unwrap();
    assert_eq!((err.exit_code, err.kind.as_str()), (4, "unauthorized"));
    assert!(err.message.starts_with("write_file() needs a token with the `stage` scope; no token was given (use --token-file or TEND_TOKEN)\n --> p.rhai:1:7"), "{}", err.message);
    let unscoped = run_writer(dir.path(), "\"deploy\"", Some(SECRET), None, &source, false).unwrap();
    assert!(
        unscoped
            .error
            .unwrap()
            .message
            .starts_with("write_file() needs a token with the `stage` scope; token `cron` does not have it")
    );
    assert!(!target.exists());

    let ok = run_writer(dir.path(), "\"stage\"", Some(SECRET), None, &source, false).unwrap();
    assert_eq!(ok.exit_code(), 0);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "written");
    let audit = std::fs::read_to_string(dir.path().join("root/audit/audit.jsonl")).unwrap();
    let record = audit.lines().find(|l| l.contains("\"primitive\":\"write_file\"")).expect("audited");
    assert!(record.contains(&format!("\"effects\":[\"write {} (7 bytes)\"]", target.display())), "{record}");
    assert!(record.contains("\"token\":\"cron\""));
}

#[test]
fn dry_run_shows_effects_and_applies_none() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("root/x.txt");
    let report =
        run_writer(dir.path(), "\"stage\"", Some(SECRET), None, &format!("write_file(\"{}\")", target.display()), true)
            .unwrap();
    assert_eq!(report.exit_code(), 0);
    assert!(report.dry_run);
    assert_eq!(report.calls[0].effects, [format!("write {} (7 bytes)", target.display())]);
    assert!(!target.exists());
}

#[test]
fn writes_outside_the_jail_are_refused_with_exit_5_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(dir.path().join("root2")).unwrap();
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside"), root.join("escape")).unwrap();
    let client = dir.path().join(".mcp.json");
    let cases = [
        (
            format!("{}/../outside/x", root.display()),
            format!("refused: {}/../outside/x contains `..` or `.`", root.display()),
        ),
        (
            format!("{}/root2/x", dir.path().display()),
            format!("refused: {}/root2/x is outside the allowed roots ({})", dir.path().display(), root.display()),
        ),
        (
            format!("{}/escape/x", root.display()),
            format!("refused: {}/escape is a symlink; tend does not follow links inside its roots", root.display()),
        ),
        (
            client.display().to_string(),
            format!(
                "refused: {} is a protected file (a client config or paths.protect); only adopt, swap and rollback may write it",
                client.display()
            ),
        ),
    ];
    for (path, want) in cases {
        library_site(dir.path(), "\"stage\"");
        let before = util::snapshot(dir.path());
        let report =
            run_writer(dir.path(), "\"stage\"", Some(SECRET), None, &format!("write_file(\"{path}\")"), false).unwrap();
        let err = report.error.expect("refused");
        assert_eq!(err.exit_code, 5, "{path}");
        assert!(err.message.starts_with(&format!("{want}\n --> p.rhai:1:1")), "{path}:\n{}", err.message);
        let after = util::snapshot(dir.path());
        let outside_bookkeeping = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .filter(|(k, _)| {
                    !["root/audit", "root/reports", "root/metrics", "root/state"].iter().any(|b| k.starts_with(b))
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(outside_bookkeeping(&before), outside_bookkeeping(&after), "{path}");
    }
    // The same client config, declared by the operation, may be written.
    let report = run_writer(
        dir.path(),
        "\"stage\"",
        Some(SECRET),
        Some(client.clone()),
        &format!("write_file(\"{}\")", client.display()),
        false,
    )
    .unwrap();
    assert_eq!(report.exit_code(), 0, "{:?}", report.error);
    assert_eq!(std::fs::read_to_string(&client).unwrap(), "written");
}

// ---------------------------------------------------------------- audit

fn audited_site() -> util::Done {
    let done = Test::new().file("p.rhai", "1\n").args(&["-q", "run", "p.rhai"]).run();
    for _ in 0..2 {
        assert!(Command::new(TEND).args(["-q", "run", "p.rhai"]).current_dir(done.path()).status().unwrap().success());
    }
    done
}

fn verify(dir: &Path) -> (i32, String, String) {
    let out = Command::new(TEND).args(["audit", "verify"]).current_dir(dir).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn edit_audit(dir: &Path, change: impl FnOnce(&mut Vec<String>) -> String) -> String {
    let path = dir.join("root/audit/audit.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(str::to_owned).collect();
    let text = change(&mut lines);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn audit_verify_accepts_an_intact_log_and_tail_shows_the_newest() {
    let done = audited_site();
    let (code, stdout, _) = verify(done.path());
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("audit log intact: 6 records in {}/root/audit/audit.jsonl\n", done.path().display()));
    let tail = Command::new(TEND).args(["audit", "tail", "-n", "2"]).current_dir(done.path()).output().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&tail.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines, done.audit_lines()[4..]);
}

#[test]
fn audit_verify_detects_an_edited_record() {
    let done = audited_site();
    let log = edit_audit(done.path(), |lines| {
        lines[2] = lines[2].replace("\"outcome\":\"ok\"", "\"outcome\":\"OK\"");
        lines.join("\n") + "\n"
    });
    assert_eq!(
        verify(done.path()),
        (1, String::new(), format!("error: {log}:3: the record was edited (its hash does not match its content)\n"))
    );
}

#[test]
fn audit_verify_detects_a_removed_record() {
    let done = audited_site();
    let log = edit_audit(done.path(), |lines| {
        lines.remove(2);
        lines.join("\n") + "\n"
    });
    assert_eq!(
        verify(done.path()),
        (
            1,
            String::new(),
            format!("error: {log}:3: expected record 3 but found record 4: records were removed or reordered\n")
        )
    );
}

#[test]
fn audit_verify_detects_reordered_records() {
    let done = audited_site();
    let log = edit_audit(done.path(), |lines| {
        lines.swap(1, 2);
        lines.join("\n") + "\n"
    });
    assert_eq!(
        verify(done.path()),
        (
            1,
            String::new(),
            format!("error: {log}:2: expected record 2 but found record 3: records were removed or reordered\n")
        )
    );
}

#[test]
fn audit_verify_detects_records_cut_from_the_end() {
    let done = audited_site();
    let log = edit_audit(done.path(), |lines| {
        lines.truncate(4);
        lines.join("\n") + "\n"
    });
    assert_eq!(
        verify(done.path()),
        (
            1,
            String::new(),
            format!(
                "error: {log}:5: the log ends at record 4 but {}/root/state/audit.head names record 6: records were removed from the end\n",
                done.path().display()
            )
        )
    );
}

#[test]
fn audit_verify_detects_a_file_truncated_mid_line() {
    let done = audited_site();
    let log = edit_audit(done.path(), |lines| {
        let text = lines.join("\n");
        text[..text.len() - 30].to_owned()
    });
    assert_eq!(
        verify(done.path()),
        (1, String::new(), format!("error: {log}:6: the record is cut off (the file ends mid-line)\n"))
    );
}

// ---------------------------------------------------------------- the run lock

/// Waits until a running tend has taken the site lock (it writes its pid into the lock file)
/// and recorded the start of its run, after which it writes nothing until the run ends.
fn wait_for_lock_holder(dir: &Path) {
    let lock = dir.join("root/state/lock");
    let audit = dir.join("root/audit/audit.jsonl");
    for _ in 0..500 {
        let locked = std::fs::read_to_string(&lock).is_ok_and(|t| t.starts_with("pid "));
        let started = std::fs::read_to_string(&audit)
            .is_ok_and(|t| t.lines().last().is_some_and(|l| l.contains("\"run.start\"")));
        let head_written = std::fs::metadata(dir.join("root/state/audit.head")).is_ok_and(|m| m.len() > 0);
        if locked && started && head_written {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("tend never took the lock");
}

#[test]
fn a_second_run_exits_3_at_once_and_changes_nothing() {
    let test = Test::new().file("slow.rhai", "loop {}\n").file("p.rhai", "1\n");
    std::fs::write(
        test.path().join("tend.toml"),
        format!("root = \"{}/root\"\n[limits]\nmax_operations = 0\ntimeout = \"20s\"\n", test.path().display()),
    )
    .unwrap();
    let mut first = Command::new(TEND).args(["-q", "run", "slow.rhai"]).current_dir(test.path()).spawn().unwrap();
    wait_for_lock_holder(test.path());
    let before = util::snapshot(test.path());
    let second = Command::new(TEND).args(["-q", "run", "p.rhai"]).current_dir(test.path()).output().unwrap();
    let after = util::snapshot(test.path());
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(second.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&second.stderr);
    let want = format!(
        "error: another run holds the site lock {}/root/state/lock (pid {} run ",
        test.path().display(),
        first.id()
    );
    assert!(stderr.starts_with(&want), "{stderr}");
    assert_eq!(before, after);
    // The kernel released the killed run's lock: the next run goes ahead.
    assert!(Command::new(TEND).args(["-q", "run", "p.rhai"]).current_dir(test.path()).status().unwrap().success());
}

// ---------------------------------------------------------------- prune

/// Writes a release tend would have installed: `release.json` with version and install time.
fn release(root: &Path, server: &str, version: &str, installed_days_ago: u64) -> std::path::PathBuf {
    let dir = root.join("servers").join(server).join("releases").join(version);
    std::fs::create_dir_all(&dir).unwrap();
    let at = time::OffsetDateTime::now_utc() - time::Duration::days(installed_days_ago as i64);
    let manifest = serde_json::json!({ "package": "@modelcontextprotocol/server-memory", "version": version, "installed_at": tend::clock::rfc3339(at) });
    std::fs::write(dir.join("release.json"), manifest.to_string()).unwrap();
    std::fs::write(dir.join("index.js"), vec![b'x'; 1000]).unwrap();
    dir
}

fn age(path: &Path, seconds: u64) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(seconds);
    std::fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| std::fs::File::open(path))
        .unwrap()
        .set_modified(when)
        .unwrap();
}

const DAY: u64 = 86_400;

/// A root with releases, backups, staging, logs, reports and things tend did not create.
fn prune_site() -> Test {
    let test = Test::new().site("[retention]\nkeep_releases = 1\nkeep_backups = 2\nbackups_days = 30\nstaging_days = 7\narchive_before_delete = [\"backups\"]\n").site(&token_line("\"prune\""));
    let root = test.path().join("root");
    for (version, days) in [("1.0.0", 50), ("1.1.0", 40), ("1.2.0", 30), ("1.3.0", 20), ("1.4.0", 10)] {
        release(&root, "memory", version, days);
    }
    std::os::unix::fs::symlink("releases/1.4.0", root.join("servers/memory/current")).unwrap();
    std::os::unix::fs::symlink("releases/1.2.0", root.join("servers/memory/previous")).unwrap();
    std::os::unix::fs::symlink("/", root.join("servers/memory/releases/9.9.9")).unwrap();
    std::fs::create_dir_all(root.join("backups")).unwrap();
    for (name, days) in [
        ("memory-1.0.0-20250101T000000Z.tar.gz", 0),
        ("memory-1.1.0-20250201T000000Z.tar.gz", 0),
        ("memory-1.2.0-20990101T000000Z.tar.gz", 0),
        ("memory-1.3.0-20990201T000000Z.tar.gz", 0),
        ("memory-backup-final.tar.gz", 400),
    ] {
        std::fs::write(root.join("backups").join(name), name).unwrap();
        if days > 0 {
            age(&root.join("backups").join(name), days * DAY);
        }
    }
    std::fs::create_dir_all(root.join("staging/memory-2.0.0.partial/package")).unwrap();
    std::fs::write(root.join("staging/memory-2.0.0.partial/package/index.js"), "partial").unwrap();
    std::fs::create_dir_all(root.join("staging/memory-2.1.0.partial")).unwrap();
    age(&root.join("staging/memory-2.0.0.partial"), 7 * DAY + 3600);
    age(&root.join("staging/memory-2.1.0.partial"), 7 * DAY - 3600);
    std::fs::write(root.join("staging/notes.txt"), "mine").unwrap();
    age(&root.join("staging/notes.txt"), 100 * DAY);
    std::fs::create_dir_all(root.join("mystuff")).unwrap();
    test
}

fn items_by_path(result: &serde_json::Value, root: &Path) -> Vec<(String, String, String)> {
    result["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let path = std::path::PathBuf::from(i["path"].as_str().unwrap());
            (
                path.strip_prefix(root).unwrap().display().to_string(),
                i["category"].as_str().unwrap().to_owned(),
                i["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn expected_plan(remove: &str, archive: &str) -> Vec<(String, String, String)> {
    [
        ("mystuff", "unknown", "keep"),
        ("staging/memory-2.0.0.partial", "staging", remove),
        ("staging/memory-2.1.0.partial", "staging", "keep"),
        ("staging/notes.txt", "unknown", "keep"),
        ("servers/memory/releases/9.9.9", "unknown", "keep"),
        ("servers/memory/releases/1.4.0", "releases", "keep"),
        ("servers/memory/releases/1.3.0", "releases", "keep"),
        ("servers/memory/releases/1.2.0", "releases", "keep"),
        ("servers/memory/releases/1.1.0", "releases", remove),
        ("servers/memory/releases/1.0.0", "releases", remove),
        ("backups/memory-backup-final.tar.gz", "unknown", "keep"),
        ("backups/memory-1.3.0-20990201T000000Z.tar.gz", "backups", "keep"),
        ("backups/memory-1.2.0-20990101T000000Z.tar.gz", "backups", "keep"),
        ("backups/memory-1.1.0-20250201T000000Z.tar.gz", "backups", archive),
        ("backups/memory-1.0.0-20250101T000000Z.tar.gz", "backups", archive),
    ]
    .iter()
    .map(|(p, c, a)| ((*p).to_owned(), (*c).to_owned(), (*a).to_owned()))
    .collect()
}

#[test]
fn prune_without_a_token_only_shows_its_plan() {
    let done = prune_site().args(&["--json", "prune"]).unchanged_but_bookkeeping().run();
    let result: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(result["dry_run"], true);
    assert_eq!(items_by_path(&result, &done.path().join("root")), expected_plan("remove", "archive_and_remove"));
    let removable: u64 = result["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["action"] != "keep")
        .map(|i| i["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(result["bytes_freed"], removable);
    let partial = result["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"].as_str().unwrap().ends_with("memory-2.0.0.partial"))
        .unwrap();
    assert_eq!((partial["bytes"].as_u64(), partial["reason"].as_str()), (Some(7), Some("older than 7d")));
    let young = result["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"].as_str().unwrap().ends_with("memory-2.1.0.partial"))
        .unwrap();
    assert_eq!((young["age_days"].as_f64(), young["reason"].as_str()), (Some(6.96), Some("within 7d")));
}

#[test]
fn prune_removes_what_retention_no_longer_keeps_and_nothing_else() {
    let test = prune_site().file("token", SECRET);
    let root = test.path().join("root");
    let outside_before = util::snapshot(Path::new("/etc"));
    let done = test.args(&["--token-file", "token", "--json", "prune"]).run();
    let result: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(result["dry_run"], false);
    assert_eq!(result["errors"], serde_json::json!([]));
    let plan = items_by_path(&result, &root);
    assert_eq!(plan, expected_plan("remove", "archive_and_remove"));
    for (path, _, action) in &plan {
        assert_eq!(std::fs::symlink_metadata(root.join(path)).is_ok(), action == "keep", "{path} {action}");
    }
    assert_eq!(std::fs::read_link(root.join("servers/memory/releases/9.9.9")).unwrap(), Path::new("/"));
    assert_eq!(util::snapshot(Path::new("/etc")), outside_before);
    // The old backups went into an archive that reads back.
    let archives: Vec<_> = std::fs::read_dir(root.join("archive")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(archives.len(), 1);
    let name = archives[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("backups-") && name.ends_with(".tar.gz"), "{name}");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(&archives[0]).unwrap()));
    let mut names: Vec<String> =
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    names.sort();
    assert_eq!(names, ["backups/memory-1.0.0-20250101T000000Z.tar.gz", "backups/memory-1.1.0-20250201T000000Z.tar.gz"]);
    // Metrics and audit record it.
    let metrics = std::fs::read_to_string(root.join("metrics/tend.prom")).unwrap();
    assert!(metrics.contains(&format!("tend_cleanup_bytes_freed_total {}\n", result["bytes_freed"])), "{metrics}");
    assert!(metrics.contains("tend_cleanup_items_total{category=\"releases\"} 2\n"), "{metrics}");
    assert!(metrics.contains("tend_cleanup_items_total{category=\"backups\"} 2\n"), "{metrics}");
    let audit = done.audit_lines();
    let record = audit.iter().find(|l| l.contains("\"primitive\":\"prune\"")).expect("prune audited");
    assert!(
        record.contains("\"token\":\"cron\"")
            && record.contains("remove tree ")
            && record.contains("archive 2 items into "),
        "{record}"
    );
    // A second prune finds nothing more to do, and the counters add up.
    let again = Command::new(TEND)
        .args(["--token-file", "token", "--json", "prune"])
        .current_dir(done.path())
        .output()
        .unwrap();
    let second: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(second["bytes_freed"], 0);
    let cleanup = |text: &str| -> Vec<String> {
        text.lines().filter(|l| l.starts_with("tend_cleanup_")).map(str::to_owned).collect()
    };
    let after = std::fs::read_to_string(root.join("metrics/tend.prom")).unwrap();
    assert_eq!(cleanup(&after), cleanup(&metrics));
    assert!(after.contains("tend_runs_total{playbook=\"tend prune\",outcome=\"ok\"} 2\n"), "{after}");
}

#[test]
fn prune_never_removes_a_release_a_process_uses() {
    let test = prune_site().file("token", SECRET);
    let old = test.path().join("root/servers/memory/releases/1.0.0");
    let mut sleeper = Command::new("sleep").arg("30").current_dir(&old).spawn().unwrap();
    let done = test.args(&["--token-file", "token", "--json", "prune"]).run();
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let result: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    let item = result["items"].as_array().unwrap().iter().find(|i| i["path"] == old.display().to_string()).unwrap();
    assert_eq!(item["action"], "keep");
    assert_eq!(item["reason"], format!("in use by pid {}", sleeper.id()));
    assert!(old.is_dir());
}

#[test]
fn prune_without_the_scope_exits_4_and_removes_nothing() {
    prune_site()
        .site_exactly("root = \"{dir}/root\"\n")
        .site(&token_line("\"stage\""))
        .file("token", SECRET)
        .args(&["--token-file", "token", "prune"])
        .status(4)
        .stderr("error: prune() needs a token with the `prune` scope; token `cron` does not have it\n --> tend prune:1:1\n  |\n1 | prune()\n  | ^\n")
        .unchanged_but_bookkeeping()
        .run();
}

#[test]
fn prune_retention_that_is_not_a_number_is_a_site_error() {
    prune_site()
        .site_exactly("root = \"{dir}/root\"\n[retention]\nkeep_releases = \"all\"\n")
        .args(&["prune"])
        .status(2)
        .stderr("error: {dir}/tend.toml:3:17: `retention.keep_releases`: invalid type: string \"all\", expected a whole number of 0 or more\n")
        .unchanged()
        .run();
}

#[test]
fn prune_copes_with_a_tree_that_changes_while_it_walks() {
    let test = prune_site().file("token", SECRET);
    let busy = test.path().join("root/staging/memory-2.0.0.partial/package");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (busy, stop) = (busy.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::write(busy.join(format!("f{n}")), "x");
                let _ = std::fs::remove_file(busy.join(format!("f{}", n.saturating_sub(3))));
                n += 1;
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let done = test.args(&["--token-file", "token", "--json", "prune"]).run();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
    let result: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(result["errors"], serde_json::json!([]));
    assert!(!busy.parent().unwrap().exists());
}

#[test]
fn a_module_whose_top_level_calls_a_primitive_is_refused_at_compile_time() {
    Test::new()
        .file("books/eager.rhai", "let all = servers();\nfn count() { 1 }\n")
        .file("books/p.rhai", "import \"eager\" as e;\ne::count()\n")
        .args(&["run", "books/p.rhai"])
        .status(2)
        .stderr("error: Function not found: servers ()\n --> {dir}/books/eager.rhai:1:11\n  |\n1 | let all = servers();\n  |           ^\nnote: imports load when the playbook is compiled; a module's top level may only define functions and constants\n")
        .unchanged()
        .run();
}

#[test]
fn prune_takes_per_call_overrides_from_a_playbook() {
    let done = prune_site().file("p.rhai", "let r = prune(#{ keep_releases: 0, keep_backups: 0, backups_days: 0 });\nr.items.filter(|i| i.action != \"keep\").len()\n").args(&["--json", "run", "--dry-run", "p.rhai"]).run();
    let report: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    // releases 1.3.0, 1.1.0, 1.0.0 (current and previous stay), the two backups stamped in
    // the past (the two stamped 2099 are not older than 0 days), one stale partial
    assert_eq!(report["result"], 6);
    assert!(done.path().join("root/servers/memory/releases/1.0.0").is_dir());
}

#[test]
fn a_removal_that_fails_is_reported_and_the_rest_goes_on() {
    let test = prune_site().file("token", SECRET);
    test.write_site();
    let stuck = test.path().join("root/staging/memory-2.0.0.partial/package/index.js");
    // root may remove anything, so an immutable file is the way to make a removal fail.
    let immutable = Command::new("chattr").arg("+i").arg(&stuck).status().is_ok_and(|s| s.success());
    if !immutable {
        eprintln!("skipped: chattr +i does not work here (needs chattr and a filesystem with attributes)");
        return;
    }
    let output = Command::new(TEND)
        .args(["--token-file", "token", "--json", "prune"])
        .current_dir(test.path())
        .output()
        .unwrap();
    let _ = Command::new("chattr").arg("-i").arg(&stuck).status();
    assert_eq!(output.status.code(), Some(1));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let partial = test.path().join("root/staging/memory-2.0.0.partial");
    assert_eq!(
        result["errors"],
        serde_json::json!([format!("cannot remove {}: Operation not permitted (os error 1)", partial.display())])
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("error: cannot remove {}: Operation not permitted (os error 1)\n", partial.display())
    );
    // Everything else planned for removal is gone.
    assert!(!test.path().join("root/servers/memory/releases/1.0.0").exists());
    assert!(!test.path().join("root/backups/memory-1.0.0-20250101T000000Z.tar.gz").exists());
}

#[test]
fn a_prune_plan_of_thousands_of_items_fits_the_sandbox() {
    let test = Test::new();
    let root = test.path().join("root");
    for i in 0..3_000 {
        release(&root, "memory", &format!("1.0.{i}"), 1);
    }
    let done = test
        .file(
            "p.rhai",
            "let r = prune();\nlet item = r.items[0];\nlet gone = r.items.filter(|i| i.action != \"keep\");\n\
             [r.items.len(), gone.len(), \"path\" in item, item.keys().len(), item.category, `${item.category}`]\n",
        )
        .args(&["--json", "run", "--dry-run", "p.rhai"])
        .run();
    let report: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(report["result"], serde_json::json!([3000, 2998, true, 7, "releases", "releases"]));
}

#[test]
fn a_missing_field_of_a_primitive_result_is_an_error() {
    Test::new()
        .file(
            ".mcp.json",
            r#"{"mcpServers": {"memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"]}}}"#,
        )
        .file("p.rhai", "let s = servers()[0];\ns.no_such_field\n")
        .args(&["-q", "run", "p.rhai"])
        .status(1)
        .stderr("error: Property not found: no_such_field\n --> p.rhai:2:2\n  |\n2 | s.no_such_field\n  |  ^\n")
        .run();
}

// ---------------------------------------------------------------- the registry harness
// A real npm registry (Verdaccio) on loopback, for the registry and staging tests.

#[test]
fn publishes_versions_and_serves_packuments() {
    let t = std::time::Instant::now();
    let registry = util::registry::Registry::start();
    eprintln!("start: {:?}", t.elapsed());
    assert!(registry.url().starts_with("http://127.0.0.1:"));
    assert!(registry.url().ends_with('/'));

    let t = std::time::Instant::now();
    registry.publish_fixture("tend-fixture-basic", "1.0.0");
    registry.publish_fixture("tend-fixture-basic", "1.1.0");
    registry.publish_fixture("@tend-fixtures/scoped", "1.0.0");
    eprintln!("3 publishes: {:?}", t.elapsed());

    let doc = registry.get_json("tend-fixture-basic");
    let versions = doc["versions"].as_object().expect("versions");
    assert!(versions.contains_key("1.0.0") && versions.contains_key("1.1.0"), "{doc:#}");
    assert_eq!(versions.len(), 2);
    assert_eq!(doc["dist-tags"]["latest"], "1.1.0");
    assert!(doc["time"]["1.0.0"].is_string(), "{doc:#}");
    assert!(doc["time"]["1.1.0"].is_string(), "{doc:#}");
    let integrity = doc["versions"]["1.0.0"]["dist"]["integrity"].as_str().expect("integrity");
    assert!(integrity.starts_with("sha512-"), "{integrity}");
    assert_eq!(doc["versions"]["1.0.0"]["bin"]["tend-fixture-basic"], "index.js");

    // The tarball URL points back at this registry and downloads.
    let tarball = doc["versions"]["1.1.0"]["dist"]["tarball"].as_str().expect("tarball");
    assert!(tarball.starts_with(&registry.url()), "{tarball}");
    let (status, bytes) = registry.get_bytes(tarball);
    assert_eq!(status, 200);
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip");

    let (status, body) = registry.get("@tend-fixtures%2fscoped");
    assert_eq!(status, 200, "{body}");
    let scoped: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(scoped["name"], "@tend-fixtures/scoped");
    assert_eq!(scoped["dist-tags"]["latest"], "1.0.0");
}

#[test]
fn unknown_package_is_404() {
    let registry = util::registry::Registry::start();
    let (status, _) = registry.get("tend-fixture-never-published");
    assert_eq!(status, 404);
    // Nothing is proxied from the public registry.
    let (status, _) = registry.get("left-pad");
    assert_eq!(status, 404);
}

#[test]
fn all_fixtures_publish_and_ten_versions_are_quick() {
    let registry = util::registry::Registry::start();
    let t = std::time::Instant::now();
    for minor in 0..10 {
        registry.publish_fixture("tend-fixture-basic", &format!("1.{minor}.0"));
    }
    eprintln!("10 publishes: {:?}", t.elapsed());
    registry.publish_fixture("tend-fixture-with-dep", "1.0.0");
    registry.publish_fixture("tend-fixture-install-script", "1.0.0");
    registry.publish_fixture("tend-fixture-engines", "1.0.0");
    registry.publish_fixture_tagged("tend-fixture-basic", "2.0.0-beta.1", "next");

    let doc = registry.get_json("tend-fixture-basic");
    assert_eq!(doc["versions"].as_object().expect("versions").len(), 11);
    assert_eq!(doc["dist-tags"]["latest"], "1.9.0");
    assert_eq!(doc["dist-tags"]["next"], "2.0.0-beta.1");

    let dep = registry.get_json("tend-fixture-with-dep");
    assert_eq!(dep["versions"]["1.0.0"]["dependencies"]["tend-fixture-basic"], "^1.0.0");
    let scripts = registry.get_json("tend-fixture-install-script");
    assert!(scripts["versions"]["1.0.0"]["scripts"]["postinstall"].is_string());
    let engines = registry.get_json("tend-fixture-engines");
    assert_eq!(engines["versions"]["1.0.0"]["engines"]["node"], ">=99");

    // Backdating a publish time shows in the served packument.
    registry.set_publish_time("tend-fixture-basic", "1.0.0", "2020-01-01T00:00:00.000Z");
    let doc = registry.get_json("tend-fixture-basic");
    assert_eq!(doc["time"]["1.0.0"], "2020-01-01T00:00:00.000Z");
}

#[test]
fn direct_publish_matches_npm_publish() {
    let registry = util::registry::Registry::start();
    registry.publish_fixture("tend-fixture-basic", "1.0.0");
    let t = std::time::Instant::now();
    for minor in 1..11 {
        registry.publish_fixture_direct("tend-fixture-basic", &format!("1.{minor}.0"));
    }
    eprintln!("10 direct publishes: {:?}", t.elapsed());
    registry.publish_fixture_direct("@tend-fixtures/scoped", "1.0.0");

    let doc = registry.get_json("tend-fixture-basic");
    assert_eq!(doc["dist-tags"]["latest"], "1.10.0");
    assert!(doc["time"]["1.10.0"].is_string());
    let by_npm = &doc["versions"]["1.0.0"];
    let direct = &doc["versions"]["1.1.0"];
    for key in ["name", "main", "bin", "license", "description"] {
        assert_eq!(by_npm[key], direct[key], "{key}");
    }
    // Both tarballs download, and their integrity and shasum check out.
    for v in [by_npm, direct] {
        let url = v["dist"]["tarball"].as_str().expect("tarball");
        let (status, bytes) = registry.get_bytes(url);
        assert_eq!(status, 200, "{url}");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("f=$(mktemp); cat > $f; printf 'sha512-%s %s' \"$(openssl dgst -sha512 -binary $f | base64 -w0)\" \"$(sha1sum $f | cut -c1-40)\"; tar -tzf $f | sort | tr '\\n' ' '; rm $f")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().expect("stdin").write_all(&bytes)?;
                c.wait_with_output()
            })
            .expect("hash tarball");
        let out = String::from_utf8_lossy(&out.stdout).to_string();
        let expected = format!(
            "{} {}",
            v["dist"]["integrity"].as_str().expect("integrity"),
            v["dist"]["shasum"].as_str().expect("shasum")
        );
        assert!(out.starts_with(&expected), "{out} vs {expected}");
        assert!(out.contains("package/index.js") && out.contains("package/package.json"), "{out}");
    }
    let beta = registry.stage_fixture("tend-fixture-basic", "2.0.0-beta.1", |pkg| {
        pkg.insert("engines".into(), serde_json::json!({"node": ">=18"}));
    });
    registry.publish_direct(beta.path(), "next");
    let doc = registry.get_json("tend-fixture-basic");
    assert_eq!(doc["dist-tags"]["latest"], "1.10.0");
    assert_eq!(doc["dist-tags"]["next"], "2.0.0-beta.1");
    assert_eq!(doc["versions"]["2.0.0-beta.1"]["engines"]["node"], ">=18");

    let scoped = registry.get_json("@tend-fixtures%2fscoped");
    let url = scoped["versions"]["1.0.0"]["dist"]["tarball"].as_str().expect("tarball");
    assert!(url.ends_with("@tend-fixtures/scoped/-/scoped-1.0.0.tgz"), "{url}");
    assert_eq!(registry.get_bytes(url).0, 200);
}

#[test]
fn npm_installs_from_the_registry() {
    let registry = util::registry::Registry::start();
    registry.publish_fixture_direct("tend-fixture-basic", "1.0.0");
    registry.publish_fixture_direct("tend-fixture-basic", "1.2.0");
    registry.publish_fixture("tend-fixture-with-dep", "1.0.0");
    let project = tempfile::tempdir().expect("temp dir");
    std::fs::write(project.path().join("package.json"), "{\"private\": true}\n").expect("write");
    let out = registry
        .npm()
        .args(["install", "--ignore-scripts", "tend-fixture-with-dep"])
        .current_dir(project.path())
        .output()
        .expect("npm install");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let installed = std::fs::read_to_string(project.path().join("node_modules/tend-fixture-basic/package.json"))
        .expect("dependency installed");
    assert!(installed.contains("\"version\": \"1.2.0\""), "{installed}");
    assert!(project.path().join("node_modules/.bin/tend-fixture-with-dep").exists());
}

// ---------------------------------------------------------------- check, against a real registry

/// A registry with tend-fixture-basic at 1.0.0, 1.1.0, 1.2.0 (published 20 hours before
/// TEND_NOW) and 2.0.0, and a site whose client config pins 1.0.0.
fn check_site() -> (util::registry::Registry, Test) {
    let registry = util::registry::Registry::start();
    for version in ["1.0.0", "1.1.0", "1.2.0", "2.0.0"] {
        registry.publish_fixture_direct("tend-fixture-basic", version);
        registry.set_publish_time("tend-fixture-basic", version, "2026-10-01T00:00:00.000Z");
    }
    registry.set_publish_time("tend-fixture-basic", "1.2.0", "2026-11-23T16:00:00.000Z");
    let test = Test::new()
        .site(&format!("registry = \"{}\"\n", registry.url()))
        .file(
            ".mcp.json",
            r#"{"mcpServers": {"basic": {"command": "npx", "args": ["-y", "tend-fixture-basic@1.0.0"]}}}"#,
        )
        .env("TEND_NOW", "2026-11-24T12:00:00Z");
    (registry, test)
}

#[test]
fn check_offers_the_newest_allowed_version_and_says_why() {
    let (registry, test) = check_site();
    let done = test.args(&["--json", "check"]).run();
    let results: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(
        results,
        serde_json::json!([{
            "name": "basic", "package": "tend-fixture-basic", "current": "1.0.0", "latest": "2.0.0",
            "candidate": "1.1.0", "update_available": true, "kind": "minor",
            "reason": "2.0.0 is a major update; allow_major is false; offering 1.1.0",
            "registry": registry.url(), "source": "registry",
        }])
    );
    // Majors allowed: 2.0.0. The 20-hour-old 1.2.0 is held by the cooldown in any case.
    let out = Command::new(TEND)
        .args(["--json", "check", "basic"])
        .current_dir(done.path())
        .env("TEND_NOW", "2026-11-24T12:00:00Z")
        .output()
        .unwrap();
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again[0]["source"], "cache", "a repeated check is answered 304 from the ETag cache");
    std::fs::write(
        done.path().join("tend.toml"),
        format!(
            "root = \"{}/root\"\nregistry = \"{}\"\n[servers.basic.policy]\nallow_major = true\nignore = [\"2.0.0\"]\n",
            done.path().display(),
            registry.url()
        ),
    )
    .unwrap();
    let out = Command::new(TEND)
        .args(["--json", "check", "basic"])
        .current_dir(done.path())
        .env("TEND_NOW", "2026-11-24T12:00:00Z")
        .output()
        .unwrap();
    let held: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(held[0]["candidate"], "1.1.0");
    assert_eq!(held[0]["reason"], "2.0.0 is in the ignore list; offering 1.1.0");
    let table = Command::new(TEND)
        .args(["check"])
        .current_dir(done.path())
        .env("TEND_NOW", "2026-11-27T00:00:00Z")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("basic                  1.0.0        2.0.0        1.2.0        minor       2.0.0 is in the ignore list; offering 1.2.0"), "{text}");
}

#[test]
fn check_errors_name_the_package_and_registry() {
    let (registry, test) = check_site();
    let url = registry.url();
    let test =
        test.file("p.rhai", "let m = ();\ntry { check(\"ghost\"); } catch (e) { m = `${e.kind}: ${e.message}`; }\nm\n");
    let done = test
        .file(".mcp.json", r#"{"mcpServers": {"ghost": {"command": "npx", "args": ["-y", "tend-fixture-ghost"]}}}"#)
        .args(&["check", "ghost"])
        .status(1)
        .stderr(&format!("error: tend-fixture-ghost: no such package (registry {url})\n --> tend check:1:2\n  |\n1 | [check(\"ghost\")]\n  |  ^\n"))
        .unchanged_but_bookkeeping()
        .run();
    let caught = Command::new(TEND).args(["--json", "run", "p.rhai"]).current_dir(done.path()).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&caught.stdout).unwrap();
    assert_eq!(report["result"], format!("failed: tend-fixture-ghost: no such package (registry {url})"));
    drop(registry);
    // The registry is gone: the check retries, then says it cannot reach it.
    let down = Command::new(TEND).args(["check", "ghost"]).current_dir(done.path()).output().unwrap();
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.starts_with("error: tend-fixture-ghost: cannot reach the registry: ")
            && stderr.contains(&format!("(registry {url})")),
        "{stderr}"
    );
}

// ---------------------------------------------------------------- stage and verify, against a real registry

/// A registry holding every fixture package, and a site with a staging token and one server
/// per fixture.
fn stage_site() -> (util::registry::Registry, Test) {
    let registry = util::registry::Registry::start();
    registry.publish_fixture_direct("tend-fixture-basic", "1.0.0");
    registry.publish_fixture_direct("tend-fixture-basic", "1.1.0");
    registry.publish_fixture("tend-fixture-with-dep", "1.0.0");
    registry.publish_fixture_direct("tend-fixture-engines", "1.0.0");
    registry.publish_fixture_direct("tend-fixture-install-script", "1.0.0");
    let servers = ["basic", "with-dep", "engines", "install-script"]
        .iter()
        .map(|s| format!("\"{s}\": {{\"command\": \"npx\", \"args\": [\"-y\", \"tend-fixture-{s}\"]}}"))
        .collect::<Vec<_>>()
        .join(", ");
    let test = Test::new()
        .site(&format!("registry = \"{}\"\n{}", registry.url(), token_line("\"stage\"")))
        .file(".mcp.json", &format!("{{\"mcpServers\": {{{servers}}}}}"))
        .file("token", SECRET);
    (registry, test)
}

fn no_partials(root: &Path) {
    let left: Vec<_> = std::fs::read_dir(root.join("staging"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".partial"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "partial folders left: {left:?}");
}

#[test]
fn stage_installs_a_verified_immutable_release_and_is_idempotent() {
    let (registry, test) = stage_site();
    let done = test.args(&["--token-file", "token", "--json", "stage", "basic", "1.1.0"]).run();
    let root = done.path().join("root");
    let staged: serde_json::Value = serde_json::from_str(&done.stdout()).unwrap();
    let release = root.join("servers/basic/releases/1.1.0");
    assert_eq!(staged["path"], release.display().to_string());
    assert_eq!(staged["reused"], false);
    let stored = registry.get_json("tend-fixture-basic");
    assert_eq!(staged["integrity"], stored["versions"]["1.1.0"]["dist"]["integrity"]);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(release.join("release.json")).unwrap()).unwrap();
    assert_eq!(
        (manifest["package"].as_str(), manifest["version"].as_str()),
        (Some("tend-fixture-basic"), Some("1.1.0"))
    );
    assert_eq!(manifest["digest"], staged["digest"]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(release.join("index.js")).unwrap().permissions().mode() & 0o777,
        0o755,
        "the declared bin is executable"
    );
    assert_eq!(std::fs::metadata(release.join("package.json")).unwrap().permissions().mode() & 0o777, 0o644);
    no_partials(&root);
    let audit = done.audit_lines();
    assert!(
        audit.iter().any(|l| l.contains("\"primitive\":\"stage\"") && l.contains("extract a ")),
        "stage is audited with its effects"
    );

    let again = Command::new(TEND)
        .args(["--token-file", "token", "--json", "stage", "basic", "1.1.0"])
        .current_dir(done.path())
        .output()
        .unwrap();
    let reused: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!((reused["reused"].as_bool(), &reused["digest"]), (Some(true), &staged["digest"]));

    let verify = Command::new(TEND).args(["verify", "basic", "1.1.0"]).current_dir(done.path()).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&verify.stdout),
        format!("basic 1.1.0 verifies: {}\n", staged["digest"].as_str().unwrap())
    );
    std::fs::write(release.join("index.js"), "tampered").unwrap();
    let verify = Command::new(TEND).args(["verify", "basic", "1.1.0"]).current_dir(done.path()).output().unwrap();
    assert_eq!(verify.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&verify.stderr),
        format!("error: {}: index.js differs from the staged file\n", release.display())
    );
}

#[test]
fn stage_installs_production_dependencies_from_the_site_registry() {
    let (registry, test) = stage_site();
    // A devDependency that no registry has: staging must not even resolve it.
    let dev = registry.stage_fixture("tend-fixture-with-dep", "1.0.1", |pkg| {
        pkg.insert("devDependencies".into(), serde_json::json!({"tend-fixture-ghost": "^1.0.0"}));
    });
    registry.publish(dev.path());
    let done = test.args(&["--token-file", "token", "stage", "with-dep", "1.0.1"]).run();
    let release = done.path().join("root/servers/with-dep/releases/1.0.1");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(release.join("package.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["devDependencies"],
        serde_json::json!({"tend-fixture-ghost": "^1.0.0"}),
        "the package's own package.json is kept"
    );
    assert!(!release.join(".package.json.tend-original").exists());
    let dep: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(release.join("node_modules/tend-fixture-basic/package.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dep["version"], "1.1.0");
    assert!(done.path().join("root/staging/with-dep-1.0.1.log").is_file());
    no_partials(&done.path().join("root"));
}

/// A folder holding an `npm` that runs `before` (shell), then the real npm with `redirect`
/// after its arguments; and the PATH that finds it first.
fn npm_wrapper(before: &str, redirect: &str) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var("PATH").unwrap();
    let npm = std::env::split_paths(&path).map(|d| d.join("npm")).find(|p| p.is_file()).expect("npm on PATH");
    let bin = tempfile::tempdir().unwrap();
    let wrapper = bin.path().join("npm");
    std::fs::write(&wrapper, format!("#!/bin/sh\n{before}\nexec '{}' \"$@\" {redirect}\n", npm.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{path}", bin.path().display());
    (bin, path)
}

#[test]
fn stage_drains_an_npm_that_says_much_on_stderr() {
    // A pipe nobody reads blocks its writer once 64 KiB are in it: with stdout read to its end
    // before stderr, this npm (256 KiB on stderr before it even starts) would hang staging
    // until npm's timeout.
    let (_registry, test) = stage_site();
    let (_bin, path) = npm_wrapper("head -c 262144 /dev/zero | tr '\\0' x >&2\necho >&2", "");
    let done = test.env("PATH", &path).args(&["--token-file", "token", "stage", "with-dep", "1.0.0"]).run();
    let root = done.path().join("root");
    let log = std::fs::read_to_string(root.join("staging/with-dep-1.0.0.log")).unwrap();
    assert!(log.contains(&format!("{}\n", "x".repeat(262_144))), "the staging log keeps npm's stderr");
    assert!(root.join("servers/with-dep/releases/1.0.0/node_modules/tend-fixture-basic/package.json").is_file());
    no_partials(&root);
}

#[test]
fn the_staging_log_keeps_the_first_and_last_of_an_npm_that_says_too_much() {
    // 3 MiB on stderr: the log keeps its first 64 KiB and its last MiB, and says how many
    // bytes between them it did not keep (the real npm's own stderr goes elsewhere here, so
    // the count is exact).
    let (_registry, test) = stage_site();
    let (_bin, path) = npm_wrapper(
        "echo BEGIN >&2\nhead -c 3145728 /dev/zero | tr '\\0' x >&2\necho >&2\necho END >&2",
        "2>/dev/null",
    );
    let done = test.env("PATH", &path).args(&["--token-file", "token", "stage", "with-dep", "1.0.0"]).run();
    let root = done.path().join("root");
    let log = std::fs::read_to_string(root.join("staging/with-dep-1.0.0.log")).unwrap();
    let total = 6 + 3_145_728 + 1 + 4;
    let omitted = total - (64 << 10) - (1 << 20);
    let marker = format!("\n[{omitted} bytes not kept]\n");
    let (head, tail) = log.split_once(&marker).expect("the log says what it did not keep");
    assert!(head.ends_with(&format!("BEGIN\n{}", "x".repeat((64 << 10) - 6))), "the head is stderr's first 64 KiB");
    let want = format!("{}\nEND\n", "x".repeat((1 << 20) - 5));
    assert!(
        tail == want,
        "the tail is not stderr's last MiB: {} bytes, ending {:?}",
        tail.len(),
        &tail.as_bytes()[tail.len().saturating_sub(16)..]
    );
    assert!(root.join("servers/with-dep/releases/1.0.0/node_modules/tend-fixture-basic/package.json").is_file());
    no_partials(&root);
}

#[test]
fn stage_refuses_bad_packages_and_leaves_nothing_behind() {
    let (registry, test) = stage_site();
    test.write_site();
    let dir = test.path().to_path_buf();
    let stage = |args: &[&str]| {
        let out = Command::new(TEND).args(["--token-file", "token"]).args(args).current_dir(&dir).output().unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("").to_owned())
    };
    let node = String::from_utf8_lossy(&Command::new("node").arg("--version").output().unwrap().stdout)
        .trim()
        .trim_start_matches('v')
        .to_owned();
    assert_eq!(
        stage(&["stage", "engines", "1.0.0"]),
        (1, format!("error: tend-fixture-engines@1.0.0: needs node >=99; this host has {node}"))
    );
    assert_eq!(
        stage(&["stage", "install-script", "1.0.0"]),
        (1, "error: tend-fixture-install-script@1.0.0: has install scripts (postinstall); set allow_install_scripts for this server to stage it".to_owned())
    );
    assert_eq!(
        stage(&["stage", "basic", "9.9.9"]),
        (1, format!("error: tend-fixture-basic@9.9.9: no such version (registry {})", registry.url()))
    );
    registry.edit_packument("tend-fixture-basic", |p| {
        p["versions"]["1.0.0"]["dist"]["integrity"] = serde_json::json!(
            "sha512-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
        );
    });
    let (code, line) = stage(&["stage", "basic", "1.0.0"]);
    assert_eq!(code, 1);
    assert!(
        line.starts_with(
            "error: tend-fixture-basic@1.0.0: the tarball does not match its integrity: expected sha512-AAAA"
        ),
        "{line}"
    );
    let root = dir.join("root");
    no_partials(&root);
    assert!(!root.join("servers").exists(), "no release was installed");
    assert!(!Path::new("/tmp/should-not-exist").exists(), "no install script ran");
    // Without the scope: exit 4, and nothing is staged.
    std::fs::write(
        dir.join("tend.toml"),
        format!("root = \"{}/root\"\nregistry = \"{}\"\n{}", dir.display(), registry.url(), token_line("\"prune\"")),
    )
    .unwrap();
    assert_eq!(
        stage(&["stage", "basic", "1.1.0"]),
        (4, "error: stage() needs a token with the `stage` scope; token `cron` does not have it".to_owned())
    );
    assert!(!root.join("servers").exists());
}

#[path = "cli/health.rs"]
mod health;

#[path = "cli/registry_failures.rs"]
mod registry_failures;

#[path = "cli/deploy.rs"]
mod deploy;

#[path = "cli/update.rs"]
mod update;

#[path = "cli/schedule.rs"]
mod schedule;

#[path = "cli/metrics.rs"]
mod metrics;
