//! Extraction speed: tend's hardened extractor against `tar -xzf` on the same 50 MB
//! npm-style tarball (a `package/` folder of JavaScript-like files, many small and a few
//! large), median of several runs each, side by side. Run: `cargo bench --bench extract_vs_tar`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use tend::extract::{ExtractLimits, extract};

const RUNS: usize = 7;

/// About 50 MB gzipped (about 210 MB unpacked): 8,500 files of 2-40 KB plus sixteen 2 MB
/// bundles, compressible like code.
fn build_tarball(path: &Path) -> (u64, usize) {
    let file = std::fs::File::create(path).expect("create tarball");
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut text = |len: usize| -> Vec<u8> {
        let words: [&[u8]; 8] = [
            b"function ",
            b"return ",
            b"const x = ",
            b"require('",
            b"module.exports",
            b"; ",
            b"\n",
            b"if (a) { b(); } ",
        ];
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            out.extend_from_slice(words[(seed % 8) as usize]);
            out.extend_from_slice(format!("{}", seed % 997).as_bytes());
        }
        out.truncate(len);
        out
    };
    let mut total = 0u64;
    let mut count = 0;
    let mut add = |builder: &mut tar::Builder<_>, name: String, data: Vec<u8>| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        total += data.len() as u64;
        count += 1;
        builder.append_data(&mut header, name, data.as_slice()).expect("append");
    };
    for i in 0..8_500 {
        let len = 2_000 + (i * 7_919) % 38_000;
        add(&mut builder, format!("package/lib/m{}/file{i}.js", i % 50), text(len));
    }
    for i in 0..16 {
        add(&mut builder, format!("package/dist/bundle{i}.js"), text(2 << 20));
    }
    builder.into_inner().expect("finish tar").finish().expect("finish gzip");
    (total, count)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let work = tempfile::tempdir().expect("temp dir");
    let tarball = work.path().join("package.tgz");
    let (bytes, files) = build_tarball(&tarball);
    let size = std::fs::metadata(&tarball).expect("stat").len();
    println!("tarball: {files} files, {:.1} MB unpacked, {:.1} MB gzipped", bytes as f64 / 1e6, size as f64 / 1e6);

    let mut tend_times = Vec::new();
    let mut tar_times = Vec::new();
    let limits = ExtractLimits::default();
    for run in 0..=RUNS {
        let dest = work.path().join(format!("tend-{run}"));
        std::fs::create_dir(&dest).expect("mkdir");
        let start = Instant::now();
        let fd = rustix::fs::open(&dest, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("open dest");
        let reader = std::io::BufReader::with_capacity(256 << 10, std::fs::File::open(&tarball).expect("open tarball"));
        let got = extract(reader, &fd, &limits).expect("extract");
        let elapsed = start.elapsed();
        assert_eq!(got.bytes, bytes);

        let dest = work.path().join(format!("tar-{run}"));
        std::fs::create_dir(&dest).expect("mkdir");
        let start = Instant::now();
        let status = Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(&dest).status().expect("run tar");
        let tar_elapsed = start.elapsed();
        assert!(status.success());
        if run > 0 {
            // run 0 warms the page cache for both
            tend_times.push(elapsed);
            tar_times.push(tar_elapsed);
        }
        std::fs::remove_dir_all(work.path().join(format!("tend-{run}"))).ok();
        std::fs::remove_dir_all(work.path().join(format!("tar-{run}"))).ok();
    }
    let (tend, tar) = (median(tend_times), median(tar_times));
    println!("tend extract   median {:>8.1} ms  ({RUNS} runs)", tend.as_secs_f64() * 1e3);
    println!("tar -xzf       median {:>8.1} ms  ({RUNS} runs)", tar.as_secs_f64() * 1e3);
    println!("tar / tend     {:.2}x  (target: >= 1.00, tend at least as fast)", tar.as_secs_f64() / tend.as_secs_f64());
}
