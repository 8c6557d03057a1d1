//! librdkafka properties the user passes to every Kafka client of a binary: `-X key=value`
//! (repeatable) and `--kafka-options`/`KAFKA_OPTIONS` (a list). This is how TLS (`security.protocol=SSL`,
//! `ssl.ca.location=…`) and SASL (`sasl.mechanisms=SCRAM-SHA-512`, `sasl.username=…`) reach the
//! producer, the consumers and the admin clients alike.
//!
//! The list is `key=value` pairs separated by commas, or by newlines when it holds a newline (then a
//! value may contain commas, as librdkafka's lists such as `debug=broker,protocol` do). Properties
//! from `-X` come after the list's, so `-X` wins for a key given twice; both are applied after the
//! binary's own settings, except the few that carry the delivery guarantees ([`RESERVED`]), which
//! are refused. Values of secret properties (passwords, keys) are never printed.

use std::fmt;
use std::str::FromStr;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use crate::config::ConfigError;

const FLAG: &str = "-X";
const LIST: &str = "--kafka-options/KAFKA_OPTIONS";

/// Properties the binaries set themselves for their delivery guarantees (or from their own flags),
/// with what to do instead.
const RESERVED: [(&str, &str); 10] = [
    (
        "bootstrap.servers",
        "give the brokers with --kafka-brokers/KAFKA_BROKERS",
    ),
    (
        "group.id",
        "the consumer group is <prefix>.<shard>.<replica-name>",
    ),
    (
        "enable.idempotence",
        "the producers are idempotent for the delivery guarantee",
    ),
    (
        "enable.gapless.guarantee",
        "cdc's producer relies on it for whole frames",
    ),
    (
        "acks",
        "the producers need acks=all for the delivery guarantee",
    ),
    (
        "request.required.acks",
        "the producers need acks=all for the delivery guarantee",
    ),
    (
        "enable.auto.commit",
        "routers commit only offsets they stored after a replica commit",
    ),
    (
        "enable.auto.offset.store",
        "routers store offsets only after a replica commit",
    ),
    (
        "auto.offset.reset",
        "routers start where the replica's position says",
    ),
    (
        "enable.partition.eof",
        "the routers' partition loops rely on it being off",
    ),
];

/// The command-line and environment arguments (flatten into a binary's clap `Config`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct KafkaArgs {
    /// A librdkafka property for every Kafka client of this process, as KEY=VALUE (repeatable):
    /// e.g. -X security.protocol=SSL -X ssl.ca.location=/etc/cascade/ca.pem. Wins over the same key in
    /// KAFKA_OPTIONS. Secret values are never printed.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub properties: Vec<Entry>,

    /// librdkafka properties for every Kafka client, as KEY=VALUE pairs separated by commas, or by
    /// newlines when the text holds one (then values may contain commas).
    #[arg(
        long = "kafka-options",
        env = "KAFKA_OPTIONS",
        value_name = "KEY=VALUE,...",
        hide_env_values = true
    )]
    pub options: Option<Entry>,
}

/// One argument's text as given; its `Debug` hides secret values.
#[derive(Clone, Default)]
pub struct Entry(String);

impl FromStr for Entry {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Entry(s.to_owned()))
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = list_entries(&self.0)
            .map(|e| match e.split_once('=') {
                Some((k, _)) if is_secret(k.trim()) => format!("{}=***", k.trim()),
                Some(_) => e.to_owned(),
                None => "<malformed>".to_owned(),
            })
            .collect();
        write!(f, "Entry({shown:?})")
    }
}

/// True for properties whose value is a secret (passwords, private keys, OAuth client secrets).
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key == "ssl.key.pem"
        || key == "sasl.oauthbearer.config"
}

/// The entries of a `KAFKA_OPTIONS` text: split on newlines if it holds one, else on commas; blank
/// entries left out.
fn list_entries(text: &str) -> impl Iterator<Item = &str> {
    let separator = if text.contains('\n') { '\n' } else { ',' };
    text.split(separator)
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

impl KafkaArgs {
    /// Every well-formed `(key, value)`, the list's first, then `-X`'s, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let list = self.options.iter().flat_map(|o| list_entries(&o.0));
        let flags = self.properties.iter().map(|p| p.0.as_str());
        list.chain(flags)
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
    }

    /// Applies the properties to `config` (after the binary's own settings, so they win).
    pub fn apply<'c>(&self, config: &'c mut ClientConfig) -> &'c mut ClientConfig {
        for (key, value) in self.pairs() {
            config.set(key, value);
        }
        config
    }

    /// Checks every entry: `key=value` form, not reserved, and accepted by librdkafka — both the
    /// property and its value, and what a client checks when it starts (files named by `ssl.*`
    /// properties, SASL mechanisms this build supports). No broker is contacted.
    pub fn check(&self) -> Result<(), ConfigError> {
        let list = self.options.iter().flat_map(|o| list_entries(&o.0));
        let list = list.enumerate().map(|(i, e)| (LIST, i, e));
        let flags = self.properties.iter().enumerate();
        for (field, i, entry) in list.chain(flags.map(|(i, e)| (FLAG, i, e.0.as_str()))) {
            let Some((key, _)) = entry.split_once('=') else {
                return Err(ConfigError::new(
                    field,
                    format!("entry {} is not of the form key=value", i + 1),
                ));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfigError::new(
                    field,
                    format!("entry {} has no property name before '='", i + 1),
                ));
            }
            if let Some((_, why)) = RESERVED.iter().find(|(k, _)| *k == key) {
                return Err(ConfigError::new(
                    field,
                    format!("property {key:?} cannot be set: {why}"),
                ));
            }
        }
        let mut config = ClientConfig::new();
        self.apply(&mut config);
        let field = if self.properties.is_empty() {
            LIST
        } else {
            "-X/KAFKA_OPTIONS"
        };
        if let Err(error) = config.create_native_config() {
            return Err(ConfigError::new(field, self.rejection(&error)));
        }
        match start_client(self.pairs()) {
            Ok(()) => Ok(()),
            Err(error) => Err(ConfigError::new(field, self.rejection(&error))),
        }
    }

    /// The property a client refuses to start with: the one its message names, or whose value it
    /// quotes, or else the first whose addition (in order) makes the start fail.
    fn culprit(&self, message: &str) -> Option<&str> {
        let pairs: Vec<(&str, &str)> = self.pairs().collect();
        if let Some((key, _)) = pairs.iter().find(|(k, _)| message.contains(k)) {
            return Some(key);
        }
        let quoted = |(k, v): &&(&str, &str)| !is_secret(k) && v.len() >= 3 && message.contains(v);
        if let Some((key, _)) = pairs.iter().find(quoted) {
            return Some(key);
        }
        (1..=pairs.len())
            .find(|&n| start_client(pairs[..n].iter().copied()).is_err())
            .map(|n| pairs[n - 1].0)
    }

    /// What librdkafka said, with the values of secret properties replaced by `***`.
    fn rejection(&self, error: &KafkaError) -> String {
        let text = match error {
            KafkaError::ClientConfig(_, description, key, _) => {
                format!("librdkafka rejects property {key:?}: {description}")
            }
            KafkaError::ClientCreation(message) => match self.culprit(message) {
                Some(key) => {
                    format!("librdkafka cannot start a client with property {key:?}: {message}")
                }
                None => {
                    format!("librdkafka cannot start a client with these properties: {message}")
                }
            },
            other => format!("librdkafka rejects these properties: {other}"),
        };
        self.pairs()
            .filter(|(k, v)| is_secret(k) && !v.is_empty())
            .fold(text, |text, (_, v)| text.replace(v, "***"))
    }
}

/// Starts (and drops) a client with these properties and no broker: librdkafka then loads what
/// they name (CA files, keys, SASL mechanisms) without contacting anything.
fn start_client<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<(), KafkaError> {
    let mut config = ClientConfig::new();
    for (key, value) in pairs {
        config.set(key, value);
    }
    config.set("client.id", "cascade-config-check");
    let client: rdkafka::producer::BaseProducer = config.create()?;
    drop(client);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    fn parse(args: &[&str], list: Option<&str>) -> KafkaArgs {
        let mut all = vec!["x"];
        all.extend_from_slice(args);
        let mut kafka = Cli::try_parse_from(all).unwrap().kafka;
        kafka.options = list.map(|l| Entry(l.to_owned()));
        kafka
    }

    #[test]
    fn the_list_splits_on_commas_or_newlines_and_flags_come_last() {
        let k = parse(
            &["-X", "client.rack=r2", "-X", "debug=broker,protocol"],
            Some("security.protocol=SSL, client.rack=r1,"),
        );
        let pairs: Vec<_> = k.pairs().collect();
        assert_eq!(
            pairs,
            [
                ("security.protocol", "SSL"),
                ("client.rack", "r1"),
                ("client.rack", "r2"),
                ("debug", "broker,protocol"),
            ]
        );
        let k = parse(&[], Some("debug=broker,protocol\nsocket.timeout.ms=5000\n"));
        let pairs: Vec<_> = k.pairs().collect();
        assert_eq!(
            pairs,
            [("debug", "broker,protocol"), ("socket.timeout.ms", "5000")]
        );
        k.check().unwrap();
    }

    #[test]
    fn malformed_reserved_and_rejected_entries_name_the_field() {
        let e = parse(&["-X", "socket.timeout.ms"], None)
            .check()
            .unwrap_err();
        assert_eq!(e.field, "-X");
        assert!(e.reason.contains("entry 1"), "{e}");
        let e = parse(&[], Some("a=b,oops")).check().unwrap_err();
        assert_eq!(e.field, LIST);
        let e = parse(&["-X", "acks=1"], None).check().unwrap_err();
        assert!(e.reason.contains("\"acks\""), "{e}");
        let e = parse(&["-X", "no.such.property=1"], None)
            .check()
            .unwrap_err();
        assert!(e.reason.contains("\"no.such.property\""), "{e}");
        let e = parse(&["-X", "security.protocol=carrier-pigeon"], None)
            .check()
            .unwrap_err();
        assert!(e.reason.contains("security.protocol"), "{e}");
        // Checked the way a client starting up checks them: a CA file that is not there.
        let e = parse(
            &[
                "-X",
                "security.protocol=SSL",
                "-X",
                "ssl.ca.location=/nonexistent/ca.pem",
            ],
            None,
        )
        .check()
        .unwrap_err();
        assert!(e.reason.contains("ssl.ca.location"), "{e}");
        let e = parse(
            &[
                "-X",
                "sasl.mechanisms=NOPE",
                "-X",
                "security.protocol=SASL_SSL",
            ],
            None,
        )
        .check()
        .unwrap_err();
        assert!(e.reason.contains("\"sasl.mechanisms\""), "{e}");
        // SCRAM comes with this build (the `ssl` feature).
        parse(
            &[
                "-X",
                "security.protocol=SASL_SSL",
                "-X",
                "sasl.mechanisms=SCRAM-SHA-512",
                "-X",
                "sasl.username=u",
                "-X",
                "sasl.password=p",
            ],
            None,
        )
        .check()
        .unwrap();
    }

    #[test]
    fn secret_values_are_never_shown() {
        let k = parse(
            &[
                "-X",
                "sasl.password=hunter2",
                "-X",
                "ssl.key.password=s3cret",
            ],
            Some("sasl.username=u"),
        );
        let shown = format!("{k:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(shown.contains("sasl.username=u"), "{shown}");
        // A rejected secret value is not echoed either.
        let k = parse(
            &[
                "-X",
                "security.protocol=SSL",
                "-X",
                "ssl.key.password=hunter2",
                "-X",
                "ssl.key.location=/nonexistent/k.pem",
            ],
            None,
        );
        let e = k.check().unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("ssl.key.location"), "{e}");
    }
}
