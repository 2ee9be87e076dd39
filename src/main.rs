use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = nxops::cli::Cli::parse();
    nxops::app::init_logging(&cli.global);
    match nxops::app::run(cli, nxops::environment::Environment::from_process()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if !err.is::<nxops::output::Reported>() {
                eprintln!("nxops: error: {err:#}");
            }
            ExitCode::from(nxops::app::exit_code(&err))
        }
    }
}
