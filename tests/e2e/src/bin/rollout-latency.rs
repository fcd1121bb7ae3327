//! Benchmark: how fast a completed rollout becomes an injected fault. A program, not a
//! test: it asserts nothing about speed, it measures and prints.
//!
//!   ROLLOUTS=20 cargo run -p havoc-e2e --bin rollout-latency
//!
//! Latency = havoc's `injectedAt` - the moment an independent watcher here received the
//! update that completed the rollout, with `delay: 0s` (see
//! [`havoc_e2e::bench::measure_reaction`]). Background load (e.g. 2,000 pods in other
//! namespaces) is set up outside (tests/bench/rollout-latency, which also points HAVOC_BIN
//! at the release build); tests/bench/footprint measures the same at 0, 5,000 and 10,000
//! background pods.

use havoc_e2e::{bench, serve::*, *};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rollouts: usize = var_or("ROLLOUTS", 20);
    with_namespace("latency", move |env, client, ns| async move {
        let api = bench::rollout_workload(&client, &ns).await?;
        let policies = vec![("react.yaml", bench::reaction_policy("react", &ns))];
        let serve = Serve::start(&env, Setup::live_in(&ns, policies)).await?;
        let reaction = bench::measure_reaction(&api, &serve, rollouts, true).await?;
        println!("LATENCY {}", reaction.summary());
        Ok(())
    })
    .await
}
