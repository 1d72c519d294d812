//! `vramguard`: inspect GPUs, self-test residency detection, serve health and metrics.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vramguard::{cli, Error};

/// Exit code when there is no usable GPU (seed 000: fail, never fall back to the CPU).
const EXIT_NO_GPU: u8 = 101;

#[derive(Parser)]
#[command(name = "vramguard", version, about = "Account for every byte of VRAM and prove it stays on the GPU")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print each GPU and run a residency self-test on one small buffer of each allocation kind.
    Check {
        /// Only this device ordinal (default: every visible GPU).
        #[arg(long)]
        device: Option<u32>,
    },
    /// Load a workload of model slots, check residency periodically, and serve /health,
    /// /health/live, /health/ready and /metrics until Ctrl-C.
    Serve(cli::serve::ServeArgs),
    /// Load safetensors files into a fresh model slot, verify them on the device, print the
    /// tensor count, bytes, seconds and GB/s, and exit.
    Load(cli::load::LoadArgs),
    /// Ask a running worker whether BYTES more would fit, and which model slots it would evict
    /// for them; changes nothing. Exit 0 when they fit, 1 when they do not, 2 when the worker
    /// could not answer.
    Plan(cli::plan::PlanArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Check { device } => match cli::check::run(device) {
            Ok((text, all_expected)) => {
                print!("{text}");
                if all_expected {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(error) => fail(&error),
        },
        Command::Load(load) => match cli::load::run(&load) {
            Ok(summary) => {
                if load.json {
                    println!("{}", serde_json::to_string(&summary).unwrap_or_default());
                } else {
                    print!("{}", summary.to_text());
                }
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        },
        Command::Plan(plan) => match cli::plan::run(&plan) {
            Ok(answer) => {
                println!("{answer}");
                if answer["fits"] == true {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(error) => {
                fail(&error);
                ExitCode::from(2)
            }
        },
        Command::Serve(serve) => {
            cli::serve::init_logging(serve.json_logs);
            match cli::serve::run(&serve) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            }
        }
    }
}

fn fail(error: &Error) -> ExitCode {
    eprintln!("vramguard: {error} — {}", error.remediation());
    match error {
        Error::NoDevice(_) => ExitCode::from(EXIT_NO_GPU),
        _ => ExitCode::FAILURE,
    }
}
