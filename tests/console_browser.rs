//! The gate console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver): a declaration published to
//! the broker shows up on the open page without a reload, its reuse raises
//! an alert at the top, and a screenshot is saved as a test artifact
//! (`target/test-artifacts/console.png`).

mod common;

use std::time::Duration;

use common::*;
use fantoccini::Locator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_appears_live_on_the_console_in_chromium() {
    let mut post = Post::new();
    let base = post.enable_http();
    post.start();
    wait_online(post.broker.port).await;
    let officer = Officer::connect(post.broker.port, "browser-officer").await;

    let (_driver, _profile, browser) = common::browser::chromium(480).await;

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
    // The strip is drawn again as the daemon's state changes: an element
    // found may be replaced before its text is read, so read it afresh.
    let mut strip = String::new();
    for _ in 0..50 {
        let read = match browser.find(Locator::Css("#strip .state")).await {
            Ok(e) => e.text().await.ok(),
            Err(_) => None,
        };
        if let Some(t) = read {
            strip = t;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

    common::browser::screenshot(&browser, "console.png").await;
    browser.close().await.unwrap();
}
