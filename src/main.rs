//! csp-sync: parse the arguments, set up logging, dispatch, exit with the run's code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match csp_sync::cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(err) => {
            let code = csp_sync::cli::exit_code_for(&err);
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    csp_sync::logging::init(
        cli.verbosity,
        matches!(cli.log_format, csp_sync::cli::LogFormat::Json),
    );
    ExitCode::from(csp_sync::app::run(cli).code())
}
