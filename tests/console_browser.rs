//! The gate console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver): a declaration published to
//! the broker shows up on the open page without a reload, its reuse raises
//! an alert at the top, and a screenshot is saved as a test artifact
//! (`target/test-artifacts/console.png`).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use fantoccini::{ClientBuilder, Locator};

/// chromedriver on its own port, stopped when dropped.
struct Driver(std::process::Child, u16);

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let mut child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver; .ci/run does it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Driver(child, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromedriver did not start on port {port}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_appears_live_on_the_console_in_chromium() {
    let mut post = Post::new();
    let base = post.enable_http();
    post.start();
    wait_online(post.broker.port).await;
    let officer = Officer::connect(post.broker.port, "browser-officer").await;

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            // The machine has no outside network: Chromium's own background
            // connections are switched off, and a small screen is what the
            // officer's tablet has.
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=480,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a Chromium session");

    browser.goto(&format!("{base}/")).await.unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath("//span[@id='live' and text()='live']"))
        .await
        .expect("the page's event stream connects");

    // Published after the page loaded: only the live stream can bring it.
    let token = post.token();
    officer.send(declaration("WEB-1", Some(&token))).await;
    let row = browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#verdicts li[data-declaration='WEB-1']"))
        .await
        .expect("the verdict appears without a reload");
    let text = row.text().await.unwrap();
    assert!(
        text.contains("CLEARED") || text.contains("cleared"),
        "{text}"
    );

    officer.send(declaration("WEB-2", Some(&token))).await;
    let alert = browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath(
            "//ul[@id='alerts']/li[contains(., 'WEB-2')]",
        ))
        .await
        .expect("the reuse alert appears at the top");
    assert!(
        alert
            .text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("suspicious")
    );
    let strip = browser
        .find(Locator::Css("#strip .state"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(strip.to_lowercase(), "ready");
    // The strip follows: one consumption record kept here (no uplink).
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(
            "//div[@id='strip'][contains(., '1 consumption records kept here')]",
        ))
        .await
        .expect("the strip shows the consumed license waiting");

    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("console.png");
    std::fs::write(&file, png).unwrap();
    eprintln!("screenshot: {}", file.display());
    browser.close().await.unwrap();
}
