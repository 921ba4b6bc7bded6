//! The `herald` binary: config errors name the variable and exit non-zero before anything
//! starts; `migrate` and `token` need only their own settings.

use std::process::Command;

fn herald() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HERALD_") {
            c.env_remove(k);
        }
    }
    c
}

fn admin_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[test]
fn serve_refuses_bad_config_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "HERALD_DATABASE_URL"),
        (
            &[("HERALD_DATABASE_URL", "postgres://x@127.0.0.1/db")],
            "HERALD_SERVICE_KEYS",
        ),
        (
            &[
                ("HERALD_DATABASE_URL", "postgres://x@127.0.0.1/db"),
                ("HERALD_SERVICE_KEYS", "0123456789abcdef"),
                (
                    "HERALD_JWT_HS256_SECRET",
                    "0123456789abcdef0123456789abcdef",
                ),
                ("HERALD_OUTBOUND_QUEUE", "many"),
            ],
            "HERALD_OUTBOUND_QUEUE",
        ),
        (
            &[
                ("HERALD_DATABASE_URL", "postgres://x@127.0.0.1/db"),
                ("HERALD_SERVICE_KEYS", "0123456789abcdef"),
                (
                    "HERALD_JWT_HS256_SECRET",
                    "0123456789abcdef0123456789abcdef",
                ),
                ("HERALD_ALLOWED_ORIGINS", "https://ok.example,null"),
            ],
            "HERALD_ALLOWED_ORIGINS",
        ),
    ];
    for (env, var) in cases {
        let out = herald()
            .arg("serve")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}: expected failure");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var} not named in: {stderr}");
        // The secret values never appear in the error output.
        assert!(!stderr.contains("0123456789abcdef0123456789abcdef"));
    }
}

#[test]
fn config_file_is_read_and_env_overrides_it() {
    let dir = std::env::temp_dir().join(format!("herald-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("herald.toml");
    std::fs::write(
        &file,
        "jwt_hs256_secret = \"0123456789abcdef0123456789abcdef\"\njwt_audience = \"from-file\"\n",
    )
    .unwrap();
    let out = herald()
        .args([
            "--config",
            file.to_str().unwrap(),
            "token",
            "--user",
            "alice",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&["from-file"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        &v,
    )
    .unwrap();
    assert_eq!(data.claims["sub"], "alice");
    // A bad value in the file is named too.
    std::fs::write(&file, "jwt_hs256_secret = \"short\"\n").unwrap();
    let out = herald()
        .args([
            "--config",
            file.to_str().unwrap(),
            "token",
            "--user",
            "alice",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_JWT_HS256_SECRET"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn migrate_needs_only_the_database_url_and_is_idempotent() {
    let db = format!("herald_test_cli_{}", uuid::Uuid::new_v4().simple());
    let admin = admin_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
    });
    let url = format!("{}/{db}", &admin[..admin.rfind('/').unwrap()]);
    for expect in ["[1]", "[]"] {
        let out = herald()
            .arg("migrate")
            .env("HERALD_DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(expect));
    }
    let out = herald()
        .arg("migrate")
        .env("HERALD_DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_DATABASE_URL"));
}
