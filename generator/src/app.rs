//! One run: connect, apply the schema if asked, bulk load, then steady mode.

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::Error;
use crate::progress::say;
use crate::session::Session;
use crate::{bulk, steady};

/// Runs what `config` asks for. SIGTERM/SIGINT stop it between (or by rolling back) transactions;
/// that is a normal end, with a summary.
pub async fn run(config: Config) -> Result<(), Error> {
    let cancel = CancellationToken::new();
    shared::shutdown::cancel_on_signal(cancel.clone());
    let Some(mut session) =
        Session::open(&config.database_url, config.max_backoff, &cancel).await?
    else {
        say("stopped before the database was reachable: nothing written");
        return Ok(());
    };
    // The schema and the ids, again after a lost connection.
    loop {
        let prepared = async {
            if config.schema {
                session.apply_schema().await?;
                say(&format!(
                    "schema: applied main-db/schema.sql to {}",
                    session.target()
                ));
            }
            if config.bulk.is_some() || config.rate.is_some() {
                session.load_ids().await?;
            }
            Ok::<_, Error>(())
        };
        match prepared.await {
            Ok(()) => break,
            Err(error) if error.is_retryable() => {
                if !session.reopen(&error, &cancel).await? {
                    return Ok(());
                }
            }
            Err(error) => return Err(error),
        }
    }
    if let Some(count) = config.bulk {
        let outcome = bulk::run(&mut session, config.seed, count, &cancel).await?;
        if outcome.interrupted {
            return Ok(());
        }
    }
    if let Some(rate) = config.rate {
        steady::run(&mut session, config.seed, rate, config.duration, &cancel).await?;
    }
    Ok(())
}
