use std::process::ExitCode;

use openclaw_trace::cli::{
    Cli, Cmd, analytics, audit, doctor, export, fleet, health, metrics, openclaw, openclaw_views,
    tail, traces,
};
use openclaw_trace::{app, logging};

fn main() -> ExitCode {
    // The release binary has no unwind tables (scripts/release.sh drops them): capturing
    // a backtrace there aborts the process, so with RUST_BACKTRACE=1 in the environment
    // the first error (a port in use, say) was a SIGABRT without a word. Errors never
    // capture one (panics still print theirs where the tables exist).
    // SAFETY: the first thing main does, before any thread is started.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    let cli = Cli::parse_args();
    // Doctor reports invalid settings as one of its checks.
    if let Some(Cmd::Doctor(a)) = &cli.command {
        return doctor::run(cli.config(), a);
    }
    let cfg = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("openclaw-trace: {e}");
            return ExitCode::from(2);
        }
    };
    let printed = match &cli.command {
        None | Some(Cmd::Serve) => return serve(cfg),
        Some(Cmd::Traces(a)) => traces::run_traces(&cfg, a),
        Some(Cmd::Trace(a)) => traces::run_trace(&cfg, a),
        Some(Cmd::Tail(a)) => return tail::run(&cfg, a),
        Some(Cmd::Usage(a)) => analytics::run_usage(&cfg, a),
        Some(Cmd::Baseline(a)) => return analytics::run_baseline(&cfg, a),
        Some(Cmd::Export(a)) => export::run_export(&cfg, a),
        Some(Cmd::Metrics(a)) => metrics::run_metrics(&cfg, a),
        Some(Cmd::Status(a)) => metrics::run_status(&cfg, a),
        Some(Cmd::Doctor(a)) => return doctor::run(Ok(cfg), a),
        Some(Cmd::Health(a)) => return health::run(&cfg, a),
        Some(Cmd::Openclaw(a)) => match &a.command {
            openclaw::OpenclawCmd::Setup(_) => return openclaw_cmd(&cfg, a),
            openclaw::OpenclawCmd::Cache(v) => openclaw_views::run_cache(&cfg, v),
            openclaw::OpenclawCmd::Scheduled(v) => openclaw_views::run_scheduled(&cfg, v),
            openclaw::OpenclawCmd::Subagents(v) => openclaw_views::run_subagents(&cfg, v),
            openclaw::OpenclawCmd::Context(v) => openclaw_views::run_context(&cfg, v),
            openclaw::OpenclawCmd::Channels(v) => openclaw_views::run_channels(&cfg, v),
            openclaw::OpenclawCmd::Fallbacks(v) => openclaw_views::run_fallbacks(&cfg, v),
            openclaw::OpenclawCmd::Waste(v) => openclaw_views::run_waste(&cfg, v),
            openclaw::OpenclawCmd::Gateway(g) => openclaw::run_gateway(&cfg, g),
            openclaw::OpenclawCmd::Skills(s) => openclaw::run_skills(&cfg, s),
        },
        Some(Cmd::Activity(a)) => audit::run_activity(&cfg, a),
        Some(Cmd::AuditReadiness(a)) => return audit::run_readiness(&cfg, a),
        Some(Cmd::Verify(a)) => return audit::run_verify(&cfg, a),
        Some(Cmd::Audit(a)) => return audit::run_audit(&cfg, a),
        Some(Cmd::Instances(a)) => return fleet::run(&cfg, a),
    };
    match printed {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(traces::CliError::Usage(m)) => {
            eprintln!("openclaw-trace: {m}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("openclaw-trace: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cfg: openclaw_trace::config::Config) -> ExitCode {
    // Before the runtime starts its threads (see util::heap).
    openclaw_trace::util::heap::limit_arenas();
    logging::init(&cfg.log, cfg.redact.enabled);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("openclaw-trace: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(app::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

fn openclaw_cmd(cfg: &openclaw_trace::config::Config, a: &openclaw::OpenclawArgs) -> ExitCode {
    match &a.command {
        openclaw::OpenclawCmd::Setup(s) => match openclaw::run_setup(cfg, s) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("openclaw-trace: {e}");
                ExitCode::FAILURE
            }
        },
        _ => ExitCode::FAILURE,
    }
}
