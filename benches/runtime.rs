//! Criterion benches of the playbook runtime: building the sandboxed engine, compiling a
//! 200-line playbook, and the cost of one call to a registered primitive from Rhai.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tend::script::{Sandbox, build_engine};
use tend::{Playbook, RunOptions, Runtime, Site};

/// A 200-line playbook in the style of the shipped ones.
fn playbook_200_lines() -> String {
    let mut text = String::from("// generated for the compile benchmark\nlet results = [];\n");
    let mut n = 0;
    while text.lines().count() < 198 {
        text.push_str(&format!(
            "fn step_{n}(server, limit) {{\n    let v = server.len() + {n};\n    if v > limit {{ return #{{name: server, ok: false, n: v}}; }}\n    #{{name: server, ok: true, n: v * 2}}\n}}\nresults.push(step_{n}(\"memory\", 10));\n"
        ));
        n += 1;
    }
    text.push_str("results.len()\n");
    text
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut site = Site::defaults(dir.path()).expect("site");
    site.root = dir.path().join("root");

    c.bench_function("engine_construction", |b| {
        b.iter(|| black_box(build_engine(&site.limits, Sandbox::unbounded())));
    });

    let runtime = Runtime::new(site.clone());
    let source = playbook_200_lines();
    assert!(source.lines().count() >= 200);
    let playbook = Playbook::from_source("bench.rhai", source, dir.path());
    let engine = build_engine(&site.limits, Sandbox::unbounded());
    c.bench_function("compile_200_line_playbook", |b| {
        b.iter(|| black_box(runtime.compile(&engine, &playbook).expect("compiles")));
    });

    // One primitive call: (time of a run making 10,000 `dry_run()` calls - time of the same
    // run without the call) / 10,000. Criterion reports both runs; subtract them.
    let calls =
        Playbook::from_source("calls.rhai", "let n = 0; for i in 0..10000 { if dry_run() { n += 1; } } n", dir.path());
    let empty =
        Playbook::from_source("loop.rhai", "let n = 0; for i in 0..10000 { if false { n += 1; } } n", dir.path());
    let mut group = c.benchmark_group("primitive_call");
    group.sample_size(20);
    group.bench_function("run_10000_dry_run_calls", |b| {
        b.iter(|| black_box(runtime.run(&calls, RunOptions::default()).expect("runs")));
    });
    group.bench_function("run_10000_empty_iterations", |b| {
        b.iter(|| black_box(runtime.run(&empty, RunOptions::default()).expect("runs")));
    });
    group.finish();
}

criterion_group!(runtime, benches);
criterion_main!(runtime);
