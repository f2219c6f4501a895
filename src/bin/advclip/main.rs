//! The advclip command line: parses the arguments and hands each subcommand to its module under `commands/`
//! (see the README for the contract).

mod args;
mod commands;

use std::process::ExitCode;

use args::{Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Embed(args) => commands::embed::run(args),
        Command::Classify(args) => commands::classify::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Apply(args) => commands::apply::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Synth(args) => commands::synth::run(args),
        Command::Pretrain(args) => commands::pretrain::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Serve(args) => commands::serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
