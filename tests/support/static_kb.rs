//! The statically linked kb and the agent image made from it, built once per test run.
//!
//! `scripts/test` builds both before the tests that need them and exports `KB_STATIC_BIN` (the path
//! `scripts/build-static` printed) and `KB_AGENT_IMAGE` (the image `images/agent/build` made from it); the tests take
//! those. Run alone (`cargo test -- --ignored`), a test calls `scripts/build-static`, which builds into its own
//! cached target directory whatever `CARGO_TARGET_DIR` says, so there is never a second static build. In CI
//! (`CI=true`) a missing one is a failure: CI must build each once, in `scripts/test`.

use std::path::PathBuf;
use std::process::Command;

use super::process::CommandExt as _;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// True in CI (`CI=true`, as GitHub Actions and most CI systems set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The static kb: `KB_STATIC_BIN`, else the output of `scripts/build-static` (outside CI only).
#[track_caller]
pub fn static_kb() -> PathBuf {
    if let Some(path) = std::env::var_os("KB_STATIC_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "KB_STATIC_BIN={} is not a file: run scripts/build-static and export the path it prints",
            path.display()
        );
        return path;
    }
    assert!(
        !in_ci(),
        "KB_STATIC_BIN is not set: in CI, scripts/test builds the static kb once and exports its path"
    );
    let run = Command::new(format!("{MANIFEST_DIR}/scripts/build-static")).run();
    run.assert_success();
    let path = PathBuf::from(run.stdout.trim());
    run.check(path.is_file(), "scripts/build-static printed no file");
    path
}

/// The agent image in the local Docker engine: `KB_AGENT_IMAGE` as `scripts/test` built it, else `TAG` built now
/// by `images/agent/build` from [`static_kb`] (outside CI only).
#[track_caller]
pub fn local_agent_image(tag: &str) -> String {
    if let Ok(image) = std::env::var("KB_AGENT_IMAGE") {
        let inspect = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", &image])
            .run();
        inspect.check(
            inspect.status.success(),
            format_args!(
                "KB_AGENT_IMAGE={image} is not in the local Docker engine: build it with `images/agent/build {image}`"
            ),
        );
        return image;
    }
    assert!(
        !in_ci(),
        "KB_AGENT_IMAGE is not set: in CI, scripts/test builds the agent image once and exports its name"
    );
    let run = Command::new(format!("{MANIFEST_DIR}/images/agent/build"))
        .arg(tag)
        .env("KB_STATIC_BIN", static_kb())
        .run();
    run.assert_success();
    run.stdout.trim().to_owned()
}
