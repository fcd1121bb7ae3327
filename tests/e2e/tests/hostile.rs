//! Hostile policy files dropped into the policy directory of a running `havoc serve`
//! (issue 11, item 1): each one is rejected with a located diagnostic on the next
//! reload, and the service stays up, healthy, with its last good policies. Before the
//! parser was made iterative, the first of them (5,000 nested `- `) aborted the process
//! with a stack overflow. Needs `target/debug/havoc` and `deploy/local/up`.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, ensure};
use havoc_e2e::{
    Env, poll,
    serve::{Serve, Setup, tail},
};
use serde_json::Value;

const NS: &str = "go-demo-8";
const REJECTED: &str = "policy reload rejected";
const RELOADED: &str = "policies reloaded";
/// A reload every second: a few of them.
const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// A pod-delete policy on the demo's repeater, run only when asked (a rollout trigger
/// that never matches stands in for "no clock"), in dry run.
fn good_policy(name: &str) -> String {
    format!(
        r#"apiVersion: havoc.dev/v1alpha1
kind: ChaosPolicy
metadata:
  name: {name}
spec:
  triggers:
    - rollout: {{namespaces: [{NS}], selector: "havoc-e2e=never"}}
  target:
    kind: Pod
    namespaces: [{NS}]
    selector: "app=repeater"
  fault:
    podDelete: {{gracePeriod: 0s}}
  duration: 1s
  health:
    alertMatchers: ['namespace="{NS}"']
"#
    )
}

/// The billion-laughs file: 10^13 strings if its aliases were expanded.
fn alias_bomb() -> String {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("l{}", i - 1)
        };
        let refs = vec![format!("*{prev}"); 10].join(", ");
        text.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    text
}

/// Each hostile file, and the diagnostic the service must log for it.
fn hostile_files() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "deep-block.yaml",
            format!("{}x\n", "- ".repeat(5_000)).into_bytes(),
            "deep-block.yaml:1:131: error: nesting deeper than 64 levels",
        ),
        (
            "deeper-block.yaml",
            format!("{}x\n", "- ".repeat(100_000)).into_bytes(),
            "deeper-block.yaml:1:131: error: nesting deeper than 64 levels",
        ),
        (
            "deep-flow.yaml",
            format!("{}{}\n", "[".repeat(5_000), "]".repeat(5_000)).into_bytes(),
            "deep-flow.yaml:1:256: error: nesting deeper than 64 levels",
        ),
        (
            "deep-mixed.yaml",
            format!(
                "spec:\n  target:\n{}- {}{}\n",
                "  ".repeat(2),
                "- ".repeat(2_000),
                "[".repeat(2_000)
            )
            .into_bytes(),
            "deep-mixed.yaml:3:131: error: nesting deeper than 64 levels",
        ),
        (
            "alias-bomb.yaml",
            alias_bomb().into_bytes(),
            "alias-bomb.yaml:4:45: error: aliases expand to more than 10000 nodes",
        ),
        (
            "not-utf8.yaml",
            [
                good_policy("latin-1").as_bytes(),
                b"  # caf\xe9 au lait\n".as_slice(),
            ]
            .concat(),
            "not-utf8.yaml:17:8: error: file is not UTF-8 text: invalid byte 0xE9",
        ),
        (
            "huge.yaml",
            format!("# {}\n", "x".repeat(5 * 1024 * 1024)).into_bytes(),
            "huge.yaml:1:1: error: file is larger than 256 KiB",
        ),
    ]
}

/// Writes a file in one step, as a ConfigMap update does: a hidden temporary file (not
/// read by havoc) renamed into place, so that no reload sees half of it.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

fn count(serve: &Serve, line: &str) -> usize {
    serve.log().matches(line).count()
}

/// Waits until `line` is in the log more than `before` times.
async fn logged_again(serve: &Serve, line: &str, before: usize, what: &str) -> anyhow::Result<()> {
    let seen = poll(RELOAD_WAIT, what, || async {
        Ok((count(serve, line) > before).then_some(()))
    })
    .await;
    seen.with_context(|| format!("log tail:\n{}", tail(&serve.log(), 20)))
}

fn names(policies: &Value) -> Vec<String> {
    let mut names: Vec<String> = policies["policies"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The process runs, `/healthz` answers, and exactly these policies are loaded.
async fn still_serving(serve: &mut Serve, policies: &[&str], after: &str) -> anyhow::Result<()> {
    let status = serve.child.try_wait()?;
    ensure!(
        status.is_none(),
        "havoc exited after {after}: {status:?}\nlog tail:\n{}",
        tail(&serve.log(), 20)
    );
    let health = serve.http.get(serve.url("/healthz")).send().await?;
    ensure!(
        health.status().is_success(),
        "/healthz after {after}: {}",
        health.status()
    );
    let loaded = names(&serve.get("/api/v1/policies").await?);
    ensure!(loaded == policies, "policies after {after}: {loaded:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_policy_files_are_rejected_and_the_service_keeps_its_policies() -> anyhow::Result<()>
{
    let env = Env::load()?;
    let mut serve = Serve::start(
        &env,
        Setup {
            dry_run: true,
            policies: vec![("good.yaml", good_policy("good"))],
            ..Setup::default()
        },
    )
    .await?;
    let dir = serve.policies_dir();
    still_serving(&mut serve, &["good"], "start").await?;

    for (name, bytes, diagnostic) in hostile_files() {
        let rejected = count(&serve, REJECTED);
        put(&dir, name, &bytes)?;
        logged_again(&serve, REJECTED, rejected, &format!("{name} rejected")).await?;
        ensure!(
            serve.log().contains(diagnostic),
            "the log names the problem of {name} with file, line and column ({diagnostic}):\n{}",
            tail(&serve.log(), 20)
        );
        still_serving(&mut serve, &["good"], name).await?;

        // Without it, the set is valid again.
        let reloaded = count(&serve, RELOADED);
        std::fs::remove_file(dir.join(name))?;
        logged_again(&serve, RELOADED, reloaded, &format!("{name} removed")).await?;
        still_serving(&mut serve, &["good"], &format!("removing {name}")).await?;
    }

    // A good edit still applies.
    put(
        &dir,
        "good.yaml",
        format!("{}---\n{}", good_policy("good"), good_policy("edited")).as_bytes(),
    )?;
    let applied = poll(RELOAD_WAIT, "the good edit applied", || async {
        let loaded = names(&serve.get("/api/v1/policies").await?);
        Ok((loaded == ["edited", "good"]).then_some(()))
    })
    .await;
    applied.with_context(|| format!("log tail:\n{}", tail(&serve.log(), 20)))?;
    still_serving(&mut serve, &["edited", "good"], "the good edit").await?;

    let (code, _) = serve.stop().await?;
    ensure!(code == Some(0), "havoc stopped with {code:?}");
    Ok(())
}
