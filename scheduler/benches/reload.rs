//! What one policy reload poll costs while nothing changed (every 5 s by default, for as
//! long as havoc runs): reading every file's contents (`fingerprint`, what each poll did
//! before) against comparing their metadata (`Watched::changed`, what it does now), for a
//! directory of 1 and of 20 policy files laid out as a mounted ConfigMap
//! (`p.yaml -> ..data/p.yaml`, `..data -> ..<timestamp>`).
//!
//! Run: `cargo bench -p havoc --bench reload`.

use std::{os::unix::fs::symlink, path::PathBuf, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use havoc::reload::{FULL_READ_EVERY, Watched, fingerprint};

/// A ConfigMap mount with `n` policy files of about 1 KiB each.
fn configmap(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let version = dir.path().join("..2026_12_06_1");
    std::fs::create_dir(&version).expect("mkdir");
    for i in 0..n {
        let text = format!(
            "apiVersion: havoc.dev/v1alpha1\nkind: ChaosPolicy\nmetadata: {{name: p{i}}}\nspec:\n  fault: {{podDelete: {{}}}}\n  schedule: {{cron: \"*/10 * * * *\"}}\n  target: {{kind: Pod, namespaces: [team-{i}], selector: app=web}}\n  duration: 1s\n{}",
            "  # a comment as policies have them\n".repeat(25)
        );
        std::fs::write(version.join(format!("p{i}.yaml")), text).expect("write");
        symlink(
            format!("..data/p{i}.yaml"),
            dir.path().join(format!("p{i}.yaml")),
        )
        .expect("link");
    }
    symlink("..2026_12_06_1", dir.path().join("..data")).expect("link");
    dir
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("reload poll, nothing changed");
    g.measurement_time(Duration::from_secs(3));
    for n in [1, 20] {
        let dir = configmap(n);
        let paths: Vec<PathBuf> = vec![dir.path().to_path_buf()];
        g.bench_function(format!("{n} files: contents read (before)"), |b| {
            b.iter(|| fingerprint(&paths));
        });
        let mut watched = Watched::now(&paths);
        // Every FULL_READ_EVERYth poll reads the contents too: counted in the mean.
        g.bench_function(
            format!("{n} files: metadata compared, contents every {FULL_READ_EVERY}th poll"),
            |b| b.iter(|| assert!(!watched.changed(&paths))),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
