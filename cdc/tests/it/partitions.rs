//! A shard topic's partition count changed (partitions added, or the topic recreated with another
//! count): a key's later changes would go to another partition than its earlier ones, so cdc refuses
//! to start with another count than the one it published the topic with (recorded in the origin
//! record), naming both counts and the way out.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_refuses_a_topic_whose_partition_count_changed() {
    let s = services();
    let name = unique("parts");
    let db_url = create_db(&s, &name).await;
    let c = connect(&db_url).await;
    c.batch_execute("CREATE TABLE kv (id integer PRIMARY KEY, v text)")
        .await
        .unwrap();
    let prefix = unique("parts");
    let mut cdc = Cdc::start(&s, &db_url, &name, &prefix, &["--topic-partitions", "2"]);
    cdc.wait_ready(Duration::from_secs(60));
    c.batch_execute("INSERT INTO kv VALUES (1, 'a')")
        .await
        .unwrap();
    assert_eq!(
        cdc.terminate(Duration::from_secs(30)),
        0,
        "{}",
        cdc.log_text()
    );

    let topic = format!("{prefix}.main");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &s.kafka)
        .create()
        .expect("admin client");
    // The local broker (tansu) has no CreatePartitions: the topic is recreated with 3 instead,
    // which cdc must refuse all the same.
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin
        .delete_topics(&[&topic], &options)
        .await
        .expect("DeleteTopics")
    {
        r.unwrap_or_else(|(t, e)| panic!("the broker did not delete {t}: {e}"));
    }
    let new = NewTopic::new(&topic, 3, TopicReplication::Fixed(1));
    for r in admin
        .create_topics([&new], &options)
        .await
        .expect("CreateTopics")
    {
        r.unwrap_or_else(|(t, e)| panic!("the broker did not create {t}: {e}"));
    }

    let (code, err) = run_cdc_on(&s, &db_url, &name, &prefix);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "topic {topic} has 3 partitions, but cdc has published it with 2"
        )),
        "{err}"
    );
    testkit::drop_slot(&s.source_url, &name).await;
}
