//! The schema check at start: a node refuses a database that lacks its migrations or whose
//! schema breaks older nodes, and runs against a newer, compatible one.

use crate::helpers::*;

async fn build_error(env: &TestEnv) -> String {
    match herald_gateway::Application::build(env.config()).await {
        Ok(_) => panic!("the node started"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn a_node_checks_the_schema_it_is_about_to_serve_on() {
    let env = TestEnv::new().await;
    let sql = env.sql().await;
    // A newer build applied migration 99, not marked as breaking: this node runs.
    sql.batch_execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (99, '0099_future.sql', 'x')",
    )
    .await
    .unwrap();
    let node = env.node().await;
    node.publish_one("alice", "on a newer schema").await;
    // Marked as breaking older nodes: this one refuses to start.
    sql.batch_execute("UPDATE schema_migrations SET breaks_older_nodes = true WHERE version = 99")
        .await
        .unwrap();
    let err = build_error(&env).await;
    assert!(err.contains("older nodes cannot run against"), "{err}");
    // A database that lacks one of this build's migrations: refused with what to run.
    sql.batch_execute(
        "DELETE FROM schema_migrations WHERE version = 99;
         DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)",
    )
    .await
    .unwrap();
    let err = build_error(&env).await;
    assert!(
        err.contains("lacks migrations") && err.contains("herald migrate"),
        "{err}"
    );
}
