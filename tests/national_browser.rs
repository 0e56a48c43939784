//! The national view in a real headless Chromium: an investigator signs in
//! at the hub, sees a double use with both uses and its evidence verified,
//! opens the license's story, and takes the cases and the flows as CSV;
//! without a sign-in the view and the API send the browser to sign in.

mod common;

use std::time::Duration;

use common::country::*;
use common::*;
use fantoccini::Locator;

const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_investigator_opens_a_national_double_use_case_with_its_evidence() {
    let mut c = Country::configured_with("", None);
    let base = c.hub.enable_http();
    let hash = permitgate::signin::hash_password(PASSWORD).unwrap();
    let conf = c.hub.dir.path().join("hub.toml");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "\n[national]\n[[national.officers]]\nid = \"inv-3\"\nrole = \"supervisor\"\npassword_hash = \"{hash}\"\n"
    ));
    std::fs::write(&conf, text).unwrap();
    c.hub.start();
    c.a.start();
    c.b.start();
    wait_online(c.a.broker.port).await;
    wait_online(c.b.broker.port).await;

    // One license cleared at two posts cut off from the hub: a double use.
    let mut gate_a = Officer::connect_to(c.a.broker.port, "gate-a", "post-a").await;
    let mut gate_b = Officer::connect_to(c.b.broker.port, "gate-b", "post-b").await;
    let _ = c.national.child.kill();
    let _ = c.national.child.wait();
    let token = c.a.token_for("LIC-TWICE");
    gate_a.send(declaration("DA-1", Some(&token))).await;
    gate_b.send(declaration("DB-1", Some(&token))).await;
    assert_eq!(gate_a.verdict_for("DA-1").await["verdict"], "cleared");
    assert_eq!(gate_b.verdict_for("DB-1").await["verdict"], "cleared");
    c.national.restart();
    assert!(
        eventually(30, || c.hub.alerts_of("double_use") == 1).await,
        "{}",
        c.hub.log()
    );

    // Nothing without a sign-in: the page and the API go to the sign-in form.
    for path in ["/national", "/api/checkpoints", "/national/cases.csv"] {
        let r = ureq::get(&format!("{base}{path}")).call().unwrap();
        assert!(r.get_url().ends_with("/signin"), "{path} → {}", r.get_url());
    }

    let (_driver, _profile, browser) = common::browser::chromium(1280).await;
    common::browser::sign_in(&browser, &base, "inv-3", PASSWORD).await;
    let case = browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("li.case[data-license='LIC-TWICE']"))
        .await
        .expect("the double use is listed");
    let text = case.text().await.unwrap();
    for what in ["post-a", "DA-1", "post-b", "DB-1", "evidence verified"] {
        assert!(text.contains(what), "{what}: {text}");
    }
    let checkpoints = browser
        .find(Locator::Id("checkpoints"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        checkpoints.contains("post-a") && checkpoints.contains("post-b"),
        "{checkpoints}"
    );
    common::browser::screenshot(&browser, "national-1280.png").await;

    // The license's story across posts.
    case.find(Locator::LinkText("LIC-TWICE"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let story = browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("story"))
        .await
        .expect("the license's story");
    let story = story.text().await.unwrap();
    assert!(
        story.contains("used more than once")
            && story.contains("DA-1")
            && story.contains("DB-1")
            && story.contains("DE-HRB-20002"),
        "{story}"
    );

    // The CSV, with the browser's session.
    let session = browser
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name() == "permitgate_session")
        .expect("a session cookie");
    let cookie = format!("permitgate_session={}", session.value());
    let cases = ureq::get(&format!("{base}/national/cases.csv"))
        .set("Cookie", &cookie)
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let rows: Vec<&str> = cases.lines().collect();
    assert_eq!(
        rows[0],
        "license_id,raised_at,checkpoint,declaration_id,consumed_at,seq,evidence_verified"
    );
    assert_eq!(rows.len(), 3, "{cases}");
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.starts_with("LIC-TWICE,") && r.ends_with(",true")),
        "{cases}"
    );
    let flows = ureq::get(&format!(
        "{base}/national/flows.csv?by=destination&since=2020-01-01"
    ))
    .set("Cookie", &cookie)
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    assert!(
        flows.starts_with("day,destination,licenses,net_kg\n") && flows.contains(",DE,2,"),
        "{flows}"
    );
    browser.close().await.unwrap();
}
