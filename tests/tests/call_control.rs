//! Call control (`pbx:plugin@0.2.0`) end to end: a tenant's call handler runs
//! every step of its calls over real SIP. The handler is the worked example
//! `plugins/examples/office-hours` (ring the extension, then the `sales`
//! group, then the on-call mobile out the tenant's trunk).

mod common;

use std::time::Duration;

use common::{ACME, Pbx, next_invite};
use pbx_e2e::Transport;

/// Acme's dial plan is the office-hours call handler, its `sales` group is
/// `group`, each attempt rings `ring_secs`, and its mobile is `mobile`.
async fn office_hours(pbx: &Pbx, group: &str, ring_secs: u32, mobile: Option<&str>) {
    pbx.store
        .install_dialplan(pbx.acme, pbx_plugin::shipped::examples::OFFICE_HOURS, 1)
        .await
        .expect("the call handler installs as acme's dial plan");
    let kv = |key: &'static str, value: String| async move {
        pbx.store
            .plugin_kv_admin_put(pbx.acme, key, Some(value.as_bytes()))
            .await
            .expect("tenant storage");
    };
    kv("ring-group:sales", group.to_string()).await;
    kv("ring.secs", ring_secs.to_string()).await;
    if let Some(number) = mobile {
        kv("forward.mobile", number.to_string()).await;
    }
    pbx.applied().await;
}

#[tokio::test]
async fn busy_goes_on_to_the_hunt_group() {
    let pbx = Pbx::start().await;
    office_hours(&pbx, "1002", 20, None).await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut busy = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut group = pbx.registered(Transport::Udp, ACME, "1002").await;

    let call = caller.call("1001").await.unwrap();
    let first = next_invite(&mut busy, Duration::from_secs(5))
        .await
        .expect("the handler rings 1001 first");
    busy.respond(&first, 486, "Busy Here", Some("b1"), false)
        .await
        .unwrap();
    let second = next_invite(&mut group, Duration::from_secs(5))
        .await
        .expect("busy: the handler rings the sales group");
    group
        .respond(&second, 200, "OK", Some("g1"), true)
        .await
        .unwrap();
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{}", answer.raw);
}

#[tokio::test]
async fn no_answer_forwards_to_the_group_then_out_the_trunk_to_the_mobile() {
    let pbx = Pbx::start().await;
    let mut carrier = pbx.carrier_trunk("carrier").await;
    // One second per attempt: what the test is about is what happens after
    // nobody answers, not the shipped ring time.
    office_hours(&pbx, "1002", 1, Some("+12125550100")).await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut first = pbx.registered(Transport::Udp, ACME, "1001").await;
    let mut group = pbx.registered(Transport::Udp, ACME, "1002").await;

    let call = caller.call("1001").await.unwrap();
    let ring1 = next_invite(&mut first, Duration::from_secs(5))
        .await
        .expect("1001 rings");
    first
        .respond(&ring1, 180, "Ringing", Some("f1"), false)
        .await
        .unwrap();
    first
        .expect_request("CANCEL")
        .await
        .expect("1001 rang out and is cancelled");
    let ring2 = next_invite(&mut group, Duration::from_secs(5))
        .await
        .expect("then the sales group rings");
    group
        .respond(&ring2, 180, "Ringing", Some("g1"), false)
        .await
        .unwrap();
    group
        .expect_request("CANCEL")
        .await
        .expect("the group rang out and is cancelled");
    let out = next_invite(&mut carrier, Duration::from_secs(5))
        .await
        .expect("then the mobile, out the trunk");
    assert!(
        out.start.starts_with("INVITE sip:+12125550100@"),
        "{}",
        out.start
    );
    carrier
        .respond(&out, 200, "OK", Some("c1"), true)
        .await
        .unwrap();
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{}", answer.raw);
}

#[tokio::test]
async fn a_forward_out_a_trunk_needs_the_destinations_approval() {
    let pbx = Pbx::start().await;
    let mut carrier = pbx.carrier_trunk("carrier").await;
    // The on-call "mobile" is abroad: a forward must not be a way around the
    // approval a direct call would need.
    office_hours(&pbx, "1002", 1, Some("+442079460018")).await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;

    // Nobody is registered at 1001 or 1002: straight on to the forward.
    let call = caller.call("1001").await.unwrap();
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(403), "{}", answer.raw);
    assert!(
        answer.start.contains("Destination Not Approved"),
        "{}",
        answer.start
    );
    assert!(
        next_invite(&mut carrier, Duration::from_millis(300))
            .await
            .is_none(),
        "nothing went out the trunk"
    );
    let requests = pbx.store.list_approvals(pbx.acme).await.unwrap();
    assert_eq!(requests.len(), 1, "the approval request is filed");
}

/// Today and tomorrow in UTC, `YYYY-MM-DD` (both, so a test running across
/// midnight still sees a holiday).
fn today_and_tomorrow_utc() -> [String; 2] {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let tomorrow = today.tomorrow().expect("a tomorrow");
    [today.to_string(), tomorrow.to_string()]
}

#[tokio::test]
async fn business_hours_follow_the_tenants_calendar() {
    let pbx = Pbx::start().await;
    let mut carrier = pbx.carrier_trunk("carrier").await;
    // Open all day, every day: the tenant's calendar alone decides.
    for (key, value) in [
        ("hours.open", "0"),
        ("hours.close", "24"),
        ("hours.weekends", "1"),
    ] {
        pbx.store
            .plugin_kv_admin_put(pbx.acme, key, Some(value.as_bytes()))
            .await
            .unwrap();
    }
    office_hours(&pbx, "1002", 20, Some("+12125550100")).await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut group = pbx.registered(Transport::Udp, ACME, "1002").await;

    // Open: the company number rings the sales group.
    let call = caller.call("0").await.unwrap();
    let ring = next_invite(&mut group, Duration::from_secs(5))
        .await
        .expect("open: the group rings");
    group
        .respond(&ring, 486, "Busy Here", Some("g1"), false)
        .await
        .unwrap();
    let out = next_invite(&mut carrier, Duration::from_secs(5))
        .await
        .expect("the group is busy: the mobile");
    carrier
        .respond(&out, 603, "Decline", Some("c1"), false)
        .await
        .unwrap();
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(603), "{}", answer.raw);

    // Today is a holiday in the tenant's calendar: closed, straight to the
    // mobile; the group does not ring.
    let holidays = today_and_tomorrow_utc()
        .map(|date| store::Holiday {
            date,
            name: "Company day".into(),
        })
        .to_vec();
    pbx.store
        .set_calendar(
            pbx.acme,
            &store::Calendar {
                time_zone: "UTC".into(),
                holidays,
            },
        )
        .await
        .unwrap();
    pbx.applied().await;
    let call = caller.call("0").await.unwrap();
    let out = next_invite(&mut carrier, Duration::from_secs(5))
        .await
        .expect("closed: the mobile at once");
    carrier
        .respond(&out, 200, "OK", Some("c2"), true)
        .await
        .unwrap();
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{}", answer.raw);
    assert!(
        next_invite(&mut group, Duration::from_millis(200))
            .await
            .is_none(),
        "the group did not ring"
    );
}

/// A dial plan written for `pbx:plugin@0.1.0` still routes: asked once when
/// the call starts; after a busy attempt the call ends with that outcome
/// (no further step).
#[tokio::test]
async fn a_0_1_dial_plan_still_routes() {
    let pbx = Pbx::start().await;
    let mut carrier = pbx.carrier_trunk("carrier").await;
    pbx.store
        .install_dialplan(pbx.acme, pbx_plugin::shipped::examples::CLASSIC_DIALPLAN, 1)
        .await
        .expect("a 0.1 dial plan installs as acme's");
    pbx.applied().await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;
    let mut callee = pbx.registered(Transport::Udp, ACME, "1001").await;

    let call = caller.call("1001").await.unwrap();
    let ring = next_invite(&mut callee, Duration::from_secs(5))
        .await
        .expect("the 0.1 plan rings the extension");
    callee
        .respond(&ring, 486, "Busy Here", Some("c1"), false)
        .await
        .unwrap();
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(486), "{}", answer.raw);

    // An outside number goes out the tenant's trunk, without the 9.
    let call = caller.call("912125550100").await.unwrap();
    let out = next_invite(&mut carrier, Duration::from_secs(5))
        .await
        .expect("out the trunk");
    assert!(
        out.start.starts_with("INVITE sip:12125550100@"),
        "{}",
        out.start
    );
    carrier
        .respond(&out, 200, "OK", Some("c2"), true)
        .await
        .unwrap();
    let answer = caller.final_response(&call).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{}", answer.raw);
}
