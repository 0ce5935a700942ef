//! The host's call-level fraud controls on a running PBX: premium-rate calls
//! wait for a provider's approval, and a burst of short calls to many numbers
//! raises an alert and suspends the extension until it is reactivated.

mod common;

use std::time::Duration;

use common::{ACME, Pbx, eventually};
use pbx_e2e::{Phone, SipMsg, Transport};
use store::{ApprovalStatus, TenantLimits};

/// A fake carrier on its own UDP port, added as acme's trunk.
async fn carrier(pbx: &Pbx) -> Phone {
    let carrier = pbx.carrier_trunk("carrier").await;
    // Generous rates so only the rule under test can refuse a call.
    pbx.store
        .set_tenant_limits(
            pbx.acme,
            &TenantLimits {
                max_calls_per_second: Some(1000),
                ..TenantLimits::default()
            },
        )
        .await
        .unwrap();
    carrier
}

/// Dials `number`; the carrier (when reached) refuses with 486. Returns the
/// caller's final response and whether the carrier saw the INVITE.
async fn dial(caller: &mut Phone, carrier: &mut Phone, number: &str) -> (SipMsg, bool) {
    let call = caller.call(number).await.unwrap();
    let reached = match carrier.recv_within(Duration::from_millis(500)).await {
        Ok(invite) if invite.method() == Some("INVITE") => {
            carrier
                .respond(&invite, 486, "Busy Here", Some("cx"), false)
                .await
                .unwrap();
            // The host's ACK for the 486.
            carrier.expect_request("ACK").await.unwrap();
            true
        }
        _ => false,
    };
    (caller.final_response(&call).await.unwrap(), reached)
}

#[tokio::test]
async fn premium_rate_waits_for_an_approval() {
    let pbx = Pbx::start().await;
    let mut carrier = carrier(&pbx).await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;

    // Until the trunk is loaded there is no route (403 No Outbound Route); then
    // the premium-rate number is refused pending approval.
    let mut refused = None;
    for _ in 0..100 {
        let (r, reached) = dial(&mut caller, &mut carrier, "919005550123").await;
        assert!(!reached, "a premium-rate call must not reach the carrier");
        if r.start.contains("Destination Not Approved") {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        refused.expect("refused pending approval").status(),
        Some(403)
    );

    // The refusal filed a request for the provider.
    let store = pbx.store.clone();
    let acme = pbx.acme;
    eventually(|| {
        let store = store.clone();
        async move {
            store
                .list_approvals(acme)
                .await
                .unwrap()
                .iter()
                .any(|a| a.status == ApprovalStatus::Pending)
        }
    })
    .await;
    let request = pbx.store.list_approvals(acme).await.unwrap().remove(0);
    assert_eq!(request.sample_number.as_deref(), Some("19005550123"));
    pbx.store
        .grant_approval(acme, request.id, "provider-admin", 1)
        .await
        .unwrap();

    // Once granted, the same call goes out.
    let mut reached_carrier = false;
    for _ in 0..100 {
        let (_, reached) = dial(&mut caller, &mut carrier, "919005550123").await;
        if reached {
            reached_carrier = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reached_carrier, "the approved call reaches the carrier");
}

#[tokio::test]
async fn many_short_calls_to_many_numbers_suspend_the_extension() {
    let pbx = Pbx::start().await;
    let mut carrier = carrier(&pbx).await;
    let mut caller = pbx.registered(Transport::Udp, ACME, "1000").await;

    // Wait for the trunk, then call ten different national numbers that fail
    // at once (the wangiri / IRSF pattern of the default rules).
    let mut distinct = 0;
    for n in 0..200 {
        if distinct == 10 {
            break;
        }
        let number = format!("9212555{:04}", 100 + n);
        let (_, reached) = dial(&mut caller, &mut carrier, &number).await;
        if reached {
            distinct += 1;
        }
    }
    assert_eq!(distinct, 10);

    // An alert is stored and the extension suspended: its calls are refused.
    let store = pbx.store.clone();
    let acme = pbx.acme;
    eventually(|| {
        let store = store.clone();
        async move {
            store
                .list_alerts(acme, 100)
                .await
                .unwrap()
                .iter()
                .any(|a| a.alert.event == "fraud.suspend_extension")
        }
    })
    .await;
    eventually(|| {
        let store = store.clone();
        async move {
            store
                .list_extensions(acme)
                .await
                .unwrap()
                .iter()
                .any(|e| e.number == "1000" && !e.enabled)
        }
    })
    .await;
    // A suspended extension's right credentials are refused with 403 (not
    // counted as failures: its phone retrying does not get its address banned).
    pbx.applied().await;
    for _ in 0..3 {
        let call = caller.call("1001").await.unwrap();
        let r = caller.final_response(&call).await.unwrap();
        assert_eq!(r.status(), Some(403), "{}", r.raw);
    }

    // Reactivated by an admin, it can call again (1001 is not registered: 480).
    pbx.store
        .set_extension_enabled(acme, "1000", true)
        .await
        .unwrap();
    pbx.applied().await;
    let call = caller.call("1001").await.unwrap();
    let r = caller.final_response(&call).await.unwrap();
    assert_eq!(
        r.status(),
        Some(480),
        "calls work again after reactivation: {}",
        r.raw
    );
}
