//! The officers' desk in a real headless Chromium: an officer signs in,
//! checks a license at the desk, releases a held shipment (its new verdict
//! is published), a supervisor closes an alert; a wrong password is
//! refused and the console is closed without a sign-in. Screenshots at
//! 480 and 1,280 pixels are saved as test artifacts.

mod common;

use std::time::Duration;

use common::*;
use fantoccini::{Client, Locator};

const PASSWORD: &str = "correct horse battery";

/// A post whose console has a desk with an officer and a supervisor.
fn post_with_desk() -> (Post, String) {
    let post = Post::new();
    let base = post.enable_http();
    let hash = permitgate::signin::hash_password(PASSWORD).unwrap();
    let cfg = post.dir.path().join("permitgate.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "time_zone = \"Asia/Shanghai\"\n\n[desk]\nsession_minutes = 60\n\n[[desk.officers]]\nid = \"o-7\"\nrole = \"officer\"\npassword_hash = \"{hash}\"\n\n\
         [[desk.officers]]\nid = \"sup-1\"\nrole = \"supervisor\"\npassword_hash = \"{hash}\"\n"
    ));
    std::fs::write(cfg, text).unwrap();
    // A firm on the denied-party list, for a hold on a near name.
    let policy = post.dir.path().join("policy.toml");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str(
        "\n[[denied_parties]]\nid = \"TR-3340019\"\nname = \"Anatolia Kinetic Systems A.S.\"\nsource = \"end-user list\"\nkind = \"company\"\n",
    );
    std::fs::write(policy, text).unwrap();
    (post, base)
}

async fn wait_for(browser: &Client, xpath: &str, what: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_signs_in_scans_releases_a_hold_and_a_supervisor_closes_an_alert() {
    let (mut post, base) = post_with_desk();
    post.start();
    wait_online(post.broker.port).await;
    let mut gate = Officer::connect(post.broker.port, "gate").await;

    // A hold (goods with no element breakdown) and an alert (a reused license).
    let held_token = post.token_for("LIC-DESK-HOLD");
    let mut d: serde_json::Value =
        serde_json::from_slice(&declaration("H-9", Some(&held_token))).unwrap();
    d["items"][0]["elements"] = serde_json::json!([]);
    gate.send(d.to_string().into_bytes()).await;
    assert_eq!(gate.verdict_for("H-9").await["verdict"], "hold");
    // A consignee whose name is one letter from a listed firm's: held.
    let mut d: serde_json::Value =
        serde_json::from_slice(&declaration("N-4", Some(&post.token_for("LIC-DESK-NAME"))))
            .unwrap();
    d["consignee"]["name"] = "Anatolia Kinetik Systems A.S.".into();
    gate.send(d.to_string().into_bytes()).await;
    let near = gate.verdict_for("N-4").await;
    assert_eq!(
        near["reasons"][0]["code"], "possible_denied_party",
        "{near}"
    );
    gate.expect_cleared(&post, "C-1").await;
    gate.send(declaration("C-2", Some(&post.token()))).await;
    gate.verdict_for("C-2").await;

    // Without a session, nothing: the console sends the browser to sign in.
    let plain = ureq::get(&format!("{base}/desk")).call().unwrap();
    assert!(plain.get_url().ends_with("/signin"), "{}", plain.get_url());

    let (_driver, _profile, browser) = common::browser::chromium(480).await;
    common::browser::sign_in(&browser, &base, "o-7", "not the password").await;
    wait_for(
        &browser,
        "//p[@id='message'][contains(., 'Wrong officer id or password')]",
        "a wrong password is refused",
    )
    .await;

    common::browser::sign_in(&browser, &base, "o-7", PASSWORD).await;
    wait_for(
        &browser,
        "//span[@id='who'][contains(., 'o-7')]",
        "the desk after sign-in",
    )
    .await;

    // The scanner types the PG1: text and Enter: the terms, nothing consumed.
    let fresh = post.token_for("LIC-DESK-SCAN");
    let input = browser.find(Locator::Id("scan-text")).await.unwrap();
    input.send_keys(&format!("{fresh}\n")).await.unwrap();
    wait_for(&browser, "//section[@id='scan-result'][contains(., 'Valid and unused')][contains(., 'LIC-DESK-SCAN')]", "the scan result").await;
    assert!(
        post.ledger_strings("SELECT license_id FROM consumed WHERE license_id = 'LIC-DESK-SCAN'")
            .is_empty()
    );
    // A used license says where it went.
    let input = browser.find(Locator::Id("scan-text")).await.unwrap();
    input
        .send_keys(&format!("{}\n", post.token()))
        .await
        .unwrap();
    wait_for(
        &browser,
        "//section[@id='scan-result'][contains(., 'license_already_used')][contains(., 'C-1')]",
        "a used license",
    )
    .await;

    // The near name sits beside the listed one, the differing word marked.
    wait_for(
        &browser,
        "//li[@data-declaration='N-4']//table[@class='names'][contains(., 'Anatolia Kinetic Systems A.S.')][contains(., 'Anatolia Kinetik Systems A.S.')][contains(., 'end-user list')]",
        "the names side by side",
    )
    .await;
    let alike = browser
        .find_all(Locator::Css("li[data-declaration='N-4'] mark.alike"))
        .await
        .unwrap();
    let mut marked = Vec::new();
    for m in alike {
        marked.push(m.text().await.unwrap());
    }
    assert!(
        marked.contains(&"kinetik".to_owned()) && marked.contains(&"kinetic".to_owned()),
        "the differing word is marked on both sides: {marked:?}"
    );
    let same = browser
        .find_all(Locator::Css("li[data-declaration='N-4'] span.same"))
        .await
        .unwrap();
    assert_eq!(same.len(), 4, "anatolia and systems, on both sides");

    // An officer may not seize or close: those need a supervisor.
    assert!(
        browser
            .find(Locator::XPath(
                "//li[@data-declaration='H-9']//option[@value='seize']"
            ))
            .await
            .is_err()
    );
    assert!(
        browser
            .find(Locator::XPath(
                "//li[contains(@class,'alert')]//button[text()='Close']"
            ))
            .await
            .is_err()
    );

    // The hold is released with a note; the daemon publishes the new verdict.
    browser
        .find(Locator::XPath(
            "//li[@data-declaration='H-9']//input[@name='note']",
        ))
        .await
        .unwrap()
        .send_keys("opened: magnets with Dy as licensed")
        .await
        .unwrap();
    browser
        .find(Locator::XPath("//li[@data-declaration='H-9']//button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &browser,
        "//p[@id='message'][contains(., 'H-9: release')]",
        "the release is confirmed",
    )
    .await;
    let released = gate.verdict_for("H-9").await;
    assert_eq!(released["verdict"], "cleared", "{released}");
    assert_eq!(released["resolution"]["officer"], "o-7");
    assert!(
        browser
            .find(Locator::Css("li[data-declaration='H-9']"))
            .await
            .is_err(),
        "no longer on hold"
    );

    // The officer acknowledges the alert; the supervisor closes it.
    browser
        .find(Locator::XPath(
            "//li[contains(., 'C-2')]//button[text()='Acknowledge']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &browser,
        "//p[@id='message'][contains(., 'acknowledged')]",
        "the acknowledgement",
    )
    .await;
    common::browser::screenshot(&browser, "desk-480.png").await;
    browser.close().await.unwrap();

    let (_driver, _profile, wide) = common::browser::chromium(1280).await;
    common::browser::sign_in(&wide, &base, "sup-1", PASSWORD).await;
    wait_for(
        &wide,
        "//span[@id='who'][contains(., 'supervisor')]",
        "the supervisor's desk",
    )
    .await;
    common::browser::screenshot(&wide, "desk-1280.png").await;
    // At 1,280 px the holds and the alerts sit side by side.
    let holds_x = wide
        .find(Locator::Id("holds"))
        .await
        .unwrap()
        .rectangle()
        .await
        .unwrap()
        .0;
    let alerts_x = wide
        .find(Locator::Id("alerts"))
        .await
        .unwrap()
        .rectangle()
        .await
        .unwrap()
        .0;
    assert!(
        alerts_x > holds_x + 300.0,
        "holds at x={holds_x}, alerts at x={alerts_x}"
    );
    wide.find(Locator::XPath(
        "//li[contains(., 'C-2')]//input[@name='note']",
    ))
    .await
    .unwrap()
    .send_keys("exporter questioned; case 2026-119")
    .await
    .unwrap();
    wide.find(Locator::XPath(
        "//li[contains(., 'C-2')]//button[text()='Close']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for(
        &wide,
        "//p[@id='message'][contains(., 'closed')]",
        "the closure",
    )
    .await;
    assert!(
        wide.find(Locator::XPath("//ul[@id='alerts']/li[contains(., 'C-2')]"))
            .await
            .is_err(),
        "a closed alert leaves the list"
    );
    let actions =
        post.ledger_strings("SELECT officer || ':' || action FROM alert_actions ORDER BY id");
    assert_eq!(actions, ["o-7:acknowledge", "sup-1:close"]);

    // In Chinese, chosen by the officer; times in the post's zone with UTC beside.
    wide.find(Locator::XPath("//span[@id='languages']/a[@lang='zh-CN']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&wide, "//h2[text()='扣留待查']", "the desk in Chinese").await;
    wait_for(
        &wide,
        "//header//button[text()='退出']",
        "sign out in Chinese",
    )
    .await;
    wide.goto(&format!("{base}/")).await.unwrap();
    let reuse = wait_for(
        &wide,
        "//ul[@id='verdicts']/li[@data-declaration='C-2']",
        "the console in Chinese",
    )
    .await;
    let text = reuse.text().await.unwrap();
    assert!(
        text.contains("拒绝") && text.contains("许可证已用于另一批货物"),
        "{text}"
    );
    assert!(text.contains("CST (") && text.contains(" UTC)"), "{text}");
    wait_for(
        &wide,
        "//h2[text()='最新裁决']",
        "the console's headings in Chinese",
    )
    .await;
    // The closed alert has left the gate console's wall too.
    assert!(
        wide.find(Locator::XPath("//ul[@id='alerts']/li[contains(., 'C-2')]"))
            .await
            .is_err()
    );
    common::browser::screenshot(&wide, "console-zh-1280.png").await;
    wide.close().await.unwrap();
    post.assert_ledger_checks_clean();
}
