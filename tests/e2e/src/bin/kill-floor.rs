//! Benchmark helper: chaoskube's work, and nothing else, written with havoc's stack (tokio,
//! kube-rs, rustls): every interval, list the pods of one namespace that match a label
//! selector, delete one of them, and create an Event on it — the three requests per kill
//! chaoskube v0.39.1 `--client-namespace-scope` makes (the API server's audit log,
//! tests/bench/footprint). No leader election, no records, no health gate.
//!
//! It answers one question for issue 27 (`tests/bench/cpu-split`, variant `floor`): what
//! a pod kill costs in Rust when it does only what the leanest peer does. If that is
//! about chaoskube's cost, the floor is the machine's (wakeups, TLS, the kernel), not the
//! language, and havoc — which by its safety rules does more per kill — cannot reach half
//! of it by doing the same work faster.
//!
//!   kill-floor --kubeconfig F --namespace NS --selector app=victim [--interval-secs 10]
//!              [--current-thread]
//!
//! Prints one line per kill (`killed NS/NAME`) on standard output.

use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, Config, Resource,
    api::{DeleteParams, ListParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use rand::seq::IndexedRandom;

struct Args {
    kubeconfig: String,
    namespace: String,
    selector: String,
    interval: Duration,
    current_thread: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let (mut kubeconfig, mut namespace, mut selector) = (None, None, None);
    let (mut interval, mut current_thread) = (Duration::from_secs(10), false);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kubeconfig" => kubeconfig = Some(value()?),
            "--namespace" => namespace = Some(value()?),
            "--selector" => selector = Some(value()?),
            "--interval-secs" => interval = Duration::from_secs(value()?.parse()?),
            "--current-thread" => current_thread = true,
            _ => bail!("unknown argument {flag}"),
        }
    }
    Ok(Args {
        kubeconfig: kubeconfig.context("--kubeconfig is required")?,
        namespace: namespace.context("--namespace is required")?,
        selector: selector.context("--selector is required")?,
        interval,
        current_thread,
    })
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    havoc_e2e::install_crypto_provider();
    let runtime = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        // havoc's runtime: two workers on this machine's two cores
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&args.kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    config.default_retry = false; // as havoc's clients
    let client = Client::try_from(config)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &args.namespace);
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "kill-floor".into(),
            instance: None,
        },
    );
    let list = ListParams::default().labels(&args.selector);
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is at once; chaoskube waits an interval too
    loop {
        tick.tick().await;
        let candidates = pods.list(&list).await?.items;
        let Some(victim) = candidates.choose(&mut rand::rng()) else {
            continue;
        };
        let name = victim.metadata.name.clone().unwrap_or_default();
        pods.delete(&name, &DeleteParams::default()).await?;
        recorder
            .publish(
                &Event {
                    type_: EventType::Normal,
                    reason: "Killing".into(),
                    note: Some("Pod was killed by kill-floor".into()),
                    action: "Killing".into(),
                    secondary: None,
                },
                &victim.object_ref(&()),
            )
            .await?;
        println!("killed {}/{name}", args.namespace);
    }
}
