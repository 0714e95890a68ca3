//! The Veraison stand-in against the wire contract. The conformance tests use the real upstream
//! vectors (`$VERAISON_TESTDATA` or `../shared/veraison-testdata/`, read there, never copied)
//! and check the project's own PSA material against them; they skip visibly where the vectors
//! are absent (a fresh clone) and fail under CI. Every other test uses the project's own
//! generated devices, CoRIMs and tokens.

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;
use trialrunner::standin::faults::Faults;
use trialrunner::standin::store::KvStore;
use trialrunner::standin::{Credentials, Standin, StandinConfig, TOKEN_PATH};
use trialrunner::veraison::ear::{self, EarStatus};
use trialrunner::veraison::es256::SigningKey;
use trialrunner::veraison::psa::{self, Device, ParsedToken, SwComponent, SEED_NONCE_B64};
use trialrunner::veraison::release::ReleaseProfile;

const SET_A_CORIM: &str = "a-perf-corim-psa-full.cbor";
const SET_A_TOKEN: &str = "a-perf-psa.good.cbor";
const LEGACY_MT: &str = "application/corim-unsigned+cbor; profile=\"http://arm.com/psa/iot/1\"";

/// The project's own device: its CoRIM (tagged or not, profile `psa/iot/1`) and its token for
/// the seed nonce stand where the upstream set B CoRIM and set A token stood.
fn own_device() -> Device {
    Device::synthetic(0x5eed, 0)
}

fn own_corim(tagged: bool) -> Vec<u8> {
    own_device().corim("http://arm.com/psa/iot/1", tagged, "own-corim")
}

fn own_token() -> Vec<u8> {
    own_device().token(&URL_SAFE.decode(SEED_NONCE_B64).unwrap())
}

fn config(release: &str) -> StandinConfig {
    StandinConfig {
        release: ReleaseProfile::parse(release).unwrap(),
        ..StandinConfig::default()
    }
}

async fn start(cfg: StandinConfig) -> Standin {
    Standin::start("127.0.0.1:0".parse().unwrap(), cfg, KvStore::memory())
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn submit(s: &Standin, body: Vec<u8>, media_type: &str) -> reqwest::Response {
    client()
        .post(s.url().join("/endorsement-provisioning/v1/submit").unwrap())
        .header("content-type", media_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// newSession → evidence; returns (evidence status, JSON body, session URL).
async fn verify(s: &Standin, nonce_b64: &str, token: Vec<u8>) -> (StatusCode, Value, url::Url) {
    let c = client();
    let new = s
        .url()
        .join(&format!(
            "/challenge-response/v1/newSession?nonce={nonce_b64}"
        ))
        .unwrap();
    let r = c.post(new.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("session/"), "relative Location, got {loc}");
    let session = new.join(&loc).unwrap();
    let r = c
        .post(session.clone())
        .header("content-type", "application/psa-attestation-token")
        .body(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null), session)
}

async fn ear_key(s: &Standin) -> ear::EarKey {
    let wk: Value = client()
        .get(s.url().join("/.well-known/veraison/verification").unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ear::key_from_jwk(&wk["ear-verification-key"]).unwrap()
}

#[tokio::test]
async fn discovery_is_veraisons_and_refuses_application_json() {
    let s = start(config("v0.0.2602")).await;
    let c = client();
    for svc in ["provisioning", "verification"] {
        let r = c
            .get(
                s.url()
                    .join(&format!("/.well-known/veraison/{svc}"))
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "application/vnd.veraison.discovery+json"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["service-state"], "READY");
        assert!(v["media-types"].as_array().is_some_and(|m| !m.is_empty()));
        let r = c
            .get(
                s.url()
                    .join(&format!("/.well-known/veraison/{svc}"))
                    .unwrap(),
            )
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 406);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let v: Value = c
        .get(s.url().join("/.well-known/veraison/provisioning").unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["api-endpoints"]["provisioningSubmit"],
        "/endorsement-provisioning/v1/submit"
    );
    let r = c
        .get(s.url().join("/no/such/path").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "404 page not found");
}

#[tokio::test]
async fn set_a_provisions_three_endorsements_and_one_trust_anchor_then_verifies_affirming() {
    let Some(dir) = common::upstream_vectors("set_a_provisions…") else {
        return;
    };
    let vector = |name: &str| common::vector_in(&dir, name);
    // Set A is untagged: the K-V era up to v0.0.2511 accepts it.
    let s = start(config("v0.0.2511")).await;
    let r = submit(&s, vector(SET_A_CORIM), LEGACY_MT).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.veraison.provisioning-session+json"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "success", "{v}");
    let counts = s.counts().await.unwrap();
    assert_eq!((counts["endorsements"], counts["trust_anchors"]), (3, 1));

    let (status, body, session) = verify(&s, SEED_NONCE_B64, vector(SET_A_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "complete");
    assert_eq!(body["nonce"], SEED_NONCE_B64, "std base64 in the K-V era");
    assert_eq!(
        STANDARD
            .decode(body["evidence"]["value"].as_str().unwrap())
            .unwrap(),
        vector(SET_A_TOKEN)
    );
    let jwt = body["result"].as_str().unwrap();
    let key = ear_key(&s).await;
    assert_eq!(ear::ear_status(jwt, Some(&key)), Ok(EarStatus::Affirming));
    // The trust vector is Veraison's for a good PSA token.
    let expected: Value =
        serde_json::from_slice(&vector("psa.good.expected-ear-submods.json")).unwrap();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["submods"]["PSA_IOT"]["ear.trustworthiness-vector"],
        expected["PSA_IOT"]["ear.trustworthiness-vector"]
    );
    assert_eq!(
        claims["eat_nonce"],
        URL_SAFE.encode(URL_SAFE.decode(SEED_NONCE_B64).unwrap())
    );

    // GET, DELETE (204), then the session is gone: 404 problem+json.
    let c = client();
    assert_eq!(c.get(session.clone()).send().await.unwrap().status(), 200);
    assert_eq!(
        c.delete(session.clone()).send().await.unwrap().status(),
        204
    );
    let r = c.get(session.clone()).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let p: Value = r.json().await.unwrap();
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("session not found for (id, tenant)=("),
        "{p}"
    );
}

#[tokio::test]
async fn wrong_nonce_is_contraindicated_not_an_error() {
    let s = start(config("v0.0.2511")).await;
    submit(&s, own_corim(false), LEGACY_MT).await;
    let other = URL_SAFE.encode([7u8; 32]);
    let (status, body, _) = verify(&s, &other, own_token()).await;
    assert_eq!(status, 200);
    assert_eq!(
        ear::ear_status(body["result"].as_str().unwrap(), Some(&ear_key(&s).await)),
        Ok(EarStatus::Contraindicated)
    );
}

#[tokio::test]
async fn unknown_device_is_contraindicated() {
    let s = start(config("v0.0.2511")).await;
    let (status, body, _) = verify(&s, SEED_NONCE_B64, own_token()).await;
    assert_eq!(status, 200);
    assert_eq!(
        ear::ear_status(body["result"].as_str().unwrap(), None),
        Ok(EarStatus::Contraindicated)
    );
}

#[tokio::test]
async fn key_value_era_keeps_duplicates_corim_store_era_refuses_them() {
    let kv = start(config("v0.0.2602")).await;
    for _ in 0..2 {
        let v: Value = submit(&kv, own_corim(true), LEGACY_MT)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "success", "{v}");
    }
    let c = kv.counts().await.unwrap();
    assert_eq!((c["endorsements"], c["trust_anchors"]), (6, 2));

    let mt = "application/rim+cbor; profile=\"http://arm.com/psa/iot/1\"";
    let cs = start(config("v0.0.2604")).await;
    let first: Value = submit(&cs, own_corim(true), mt).await.json().await.unwrap();
    assert_eq!(first["status"], "success", "{first}");
    let second: Value = submit(&cs, own_corim(true), mt).await.json().await.unwrap();
    assert_eq!(second["status"], "failed");
    assert!(
        second["failure-reason"]
            .as_str()
            .unwrap()
            .contains("already in store"),
        "{second}"
    );
}

#[tokio::test]
async fn provisioning_error_paths() {
    let s = start(config("v0.0.2602")).await;
    // Unknown media type: 415 with the accepted types in `Accept`.
    let r = submit(&s, own_corim(true), "application/cbor").await;
    assert_eq!(r.status(), 415);
    assert!(r.headers()["accept"]
        .to_str()
        .unwrap()
        .contains("corim-unsigned+cbor"));
    // Empty body: 400 "empty body".
    let r = submit(&s, vec![], LEGACY_MT).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["detail"], "empty body");
    // Untagged CoRIM from v0.0.2512 on: 200 with status failed.
    let v: Value = submit(&s, own_corim(false), LEGACY_MT)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "failed");
    // Garbage: 200 failed, with a reason.
    let v: Value = submit(&s, b"not cbor".to_vec(), LEGACY_MT)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "failed");
    assert!(v["failure-reason"]
        .as_str()
        .unwrap()
        .starts_with("submit endorsement returned error"));
    // The media type is normalised as Go's mime package does (case of type, quoting).
    let v: Value = submit(
        &s,
        own_corim(true),
        "Application/Corim-Unsigned+CBOR; profile=\"http://arm.com/psa/iot/1\"",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["status"], "success");
}

#[tokio::test]
async fn bearer_auth_with_keycloak_password_grant() {
    let cfg = StandinConfig {
        auth: Some(Credentials::default()),
        ..config("v0.0.2602")
    };
    let s = start(cfg).await;
    let c = client();
    let r = submit(&s, own_corim(true), LEGACY_MT).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.bytes().await.unwrap().is_empty(),
        "gin-keycloak answers 401 with an empty body"
    );
    let token_url = s.url().join(TOKEN_PATH).unwrap();
    let bad = c
        .post(token_url.clone())
        .form(&[
            ("grant_type", "password"),
            ("client_id", "veraison-client"),
            ("username", "veraison-provisioner"),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let d = Credentials::default();
    let ok: Value = c
        .post(token_url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", d.client_id.as_str()),
            ("client_secret", d.client_secret.as_str()),
            ("username", d.username.as_str()),
            ("password", d.password.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = ok["access_token"].as_str().unwrap();
    assert_eq!(ok["expires_in"], 1800);
    let r = c
        .post(s.url().join("/endorsement-provisioning/v1/submit").unwrap())
        .bearer_auth(token)
        .header("content-type", LEGACY_MT)
        .body(own_corim(true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Verification never needs a token.
    let (status, _, _) = verify(&s, SEED_NONCE_B64, own_token()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn session_api_error_paths_and_nonce_rules() {
    let s = start(config("v0.0.2602")).await;
    let c = client();
    let new = |q: &str| {
        s.url()
            .join(&format!("/challenge-response/v1/newSession{q}"))
            .unwrap()
    };
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(
            c.post(new(&format!("?nonce={SEED_NONCE_B64}&nonceSize=32")))
                .send()
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(c.post(new("?nonceSize=7")).send().await.unwrap()),
        400
    );
    assert_eq!(
        status(c.post(new("?nonceSize=64")).send().await.unwrap()),
        201
    );
    assert_eq!(status(c.post(new("")).send().await.unwrap()), 201);
    // Tagged releases require padding: the unpadded 32-byte nonce is refused; HEAD accepts it.
    let unpadded = SEED_NONCE_B64.trim_end_matches('=');
    assert_eq!(
        status(
            c.post(new(&format!("?nonce={unpadded}")))
                .send()
                .await
                .unwrap()
        ),
        400
    );
    let head = start(config("head")).await;
    let r = c
        .post(
            head.url()
                .join(&format!(
                    "/challenge-response/v1/newSession?nonce={unpadded}"
                ))
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap()["nonce"],
        unpadded,
        "HEAD sends base64url unpadded"
    );
    // Evidence: unknown session 404, bad id 400, unsupported type 415, empty body 400, Accept json 406.
    let sess = |id: &str| {
        s.url()
            .join(&format!("/challenge-response/v1/session/{id}"))
            .unwrap()
    };
    let token = own_token();
    let post = |u: url::Url, ct: &str, body: Vec<u8>| {
        c.post(u)
            .header("content-type", ct.to_string())
            .body(body)
            .send()
    };
    assert_eq!(
        post(
            sess(&uuid::Uuid::new_v4().to_string()),
            "application/psa-attestation-token",
            token.clone()
        )
        .await
        .unwrap()
        .status(),
        404
    );
    assert_eq!(
        post(
            sess("not-a-uuid"),
            "application/psa-attestation-token",
            token.clone()
        )
        .await
        .unwrap()
        .status(),
        400
    );
    assert_eq!(
        post(
            sess(&uuid::Uuid::new_v4().to_string()),
            "application/json",
            token.clone()
        )
        .await
        .unwrap()
        .status(),
        415
    );
    assert_eq!(
        post(
            sess(&uuid::Uuid::new_v4().to_string()),
            "application/psa-attestation-token",
            vec![]
        )
        .await
        .unwrap()
        .status(),
        400
    );
    let r = c
        .post(new(""))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
}

#[tokio::test]
async fn faults_slow_start_error_rate_db_cap_and_memcached_delete() {
    // Slow start: 500 "connection refused" from VTS, then READY.
    let cfg = StandinConfig {
        faults: Faults {
            // Long enough that the first request lands inside it even when the machine stalls
            // this test for a second or two (the other tests of this file run beside it).
            slow_start: Duration::from_secs(3),
            ..Faults::default()
        },
        ..config("v0.0.2602")
    };
    let s = start(cfg).await;
    let wk = s.url().join("/.well-known/veraison/verification").unwrap();
    let r = client().get(wk.clone()).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("connection refused"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client().get(wk.clone()).send().await.unwrap().status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still not READY");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Error rate 1: every submission is a 500.
    let s = start(StandinConfig {
        faults: Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
        ..config("v0.0.2602")
    })
    .await;
    assert_eq!(submit(&s, own_corim(true), LEGACY_MT).await.status(), 500);

    // DB cap 1 with 300 ms of latency: concurrent requests get "too many clients".
    let faults = Faults {
        db_connections: Some(1),
        latency: Some("300ms".parse().unwrap()),
        ..Faults::default()
    };
    let s = start(StandinConfig {
        faults,
        ..config("v0.0.2602")
    })
    .await;
    let (a, b) = tokio::join!(
        submit(&s, own_corim(true), LEGACY_MT),
        submit(&s, own_corim(true), LEGACY_MT)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 500]);
    let loser = if a.status() == 500 { a } else { b };
    assert!(loser.text().await.unwrap().contains("too many clients"));

    // memcached backend: DELETE of a missing session is a 500 (cache miss); ttlcache gives 204.
    let s = start(StandinConfig {
        memcached_sessions: true,
        ..config("v0.0.2602")
    })
    .await;
    let gone = s
        .url()
        .join(&format!(
            "/challenge-response/v1/session/{}",
            uuid::Uuid::new_v4()
        ))
        .unwrap();
    assert_eq!(
        client().delete(gone.clone()).send().await.unwrap().status(),
        500
    );
    let s = start(config("v0.0.2602")).await;
    let gone = s
        .url()
        .join(&format!(
            "/challenge-response/v1/session/{}",
            uuid::Uuid::new_v4()
        ))
        .unwrap();
    assert_eq!(client().delete(gone).send().await.unwrap().status(), 204);
}

/// The vectors' device, rebuilt with the project's generator.
fn vector_device(dir: &std::path::Path) -> Device {
    let vector = |name: &str| common::vector_in(dir, name);
    let jwk: Value = serde_json::from_slice(&vector("psa-iak-ec-p256.jwk.json")).unwrap();
    let d = URL_SAFE_NO_PAD.decode(jwk["d"].as_str().unwrap()).unwrap();
    let token = ParsedToken::parse(&vector(SET_A_TOKEN)).unwrap();
    let c = token.claims;
    Device {
        implementation_id: c.implementation_id,
        instance_id: c.instance_id,
        key: SigningKey::from_scalar(&d).unwrap(),
        sw_components: c
            .sw_components
            .into_iter()
            .map(|s| SwComponent { ..s })
            .collect(),
    }
}

#[test]
fn generated_tokens_match_the_vectors_byte_for_byte_up_to_the_signature() {
    let Some(dir) = common::upstream_vectors("generated_tokens_match_the_vectors…") else {
        return;
    };
    let vector = |name: &str| common::vector_in(&dir, name);
    let vec_token = vector(SET_A_TOKEN);
    let device = vector_device(&dir);
    let nonce = URL_SAFE.decode(SEED_NONCE_B64).unwrap();
    // Same claims, same encoding: the payload is the vector's bytes 10..480.
    assert_eq!(device.claims(&nonce), vec_token[10..480]);
    let ours = device.token(&nonce);
    assert_eq!(ours.len(), 546);
    assert_eq!(
        ours[..482],
        vec_token[..482],
        "header, payload and the signature's bstr header are identical"
    );
    // Our signature verifies with the vector CoRIM's key, and the vector's with ours.
    let corim = psa::parse_corim(&vector(SET_A_CORIM)).unwrap();
    let pem = &corim.trust_anchors[0].2;
    ParsedToken::parse(&ours).unwrap().verify(pem).unwrap();
    ParsedToken::parse(&vec_token)
        .unwrap()
        .verify(&device.public_key_pem())
        .unwrap();
}

#[test]
fn generated_corims_have_the_vectors_structure() {
    let Some(dir) = common::upstream_vectors("generated_corims_have_the_vectors_structure") else {
        return;
    };
    let vector = |name: &str| common::vector_in(&dir, name);
    let theirs = psa::parse_corim(&vector(SET_A_CORIM)).unwrap();
    assert!(!theirs.tagged);
    assert_eq!(theirs.profile, "http://arm.com/psa/iot/1");
    let device = vector_device(&dir);
    let ours = psa::parse_corim(&device.corim("http://arm.com/psa/iot/1", false, "x")).unwrap();
    assert_eq!(ours.reference_values, theirs.reference_values);
    assert_eq!(ours.trust_anchors.len(), 1);
    assert_eq!(ours.trust_anchors[0].0, theirs.trust_anchors[0].0);
    assert_eq!(ours.trust_anchors[0].1, theirs.trust_anchors[0].1);
    // Set C (2025 profile, tag 560 class ids) parses too.
    let c = psa::parse_corim(&vector("c-scheme-corim-psa-valid.cbor")).unwrap();
    assert!(c.tagged && c.profile == "tag:arm.com,2025:psa#1.0.0");
    assert_eq!(c.reference_values[0].1.len(), 3);
}

#[tokio::test]
async fn generated_devices_provision_and_verify_in_every_era() {
    for (release, mt) in [
        ("v0.0.2511", LEGACY_MT),
        ("v0.0.2602", LEGACY_MT),
        (
            "v0.0.2604",
            "application/rim+cbor; profile=\"http://arm.com/psa/iot/1\"",
        ),
        (
            "head",
            "application/rim+cbor; profile=\"tag:arm.com,2025:psa#1.0.0\"",
        ),
    ] {
        let profile = ReleaseProfile::parse(release).unwrap();
        assert_eq!(profile.provisioning_media_type, mt);
        let s = start(config(release)).await;
        let device = Device::synthetic(42, 1);
        let v: Value = submit(
            &s,
            device.corim(profile.corim_profile, profile.corim_tagged, "id-1"),
            mt,
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(v["status"], "success", "{release}: {v}");
        let nonce = [5u8; 32];
        let (status, body, _) = verify(&s, &URL_SAFE.encode(nonce), device.token(&nonce)).await;
        assert_eq!(status, 200);
        assert_eq!(
            ear::ear_status(body["result"].as_str().unwrap(), Some(&ear_key(&s).await)),
            Ok(EarStatus::Affirming),
            "{release}"
        );
    }
}

#[tokio::test]
async fn with_postgres_verification_reads_every_duplicate_row() {
    let pg = common::postgres();
    let db = pg.database("standin_weight");
    let store = KvStore::postgres(&pg.conninfo(&db), 2).await.unwrap();
    let s = Standin::start("127.0.0.1:0".parse().unwrap(), config("v0.0.2602"), store)
        .await
        .unwrap();
    let device = Device::synthetic(9, 9);
    let v: Value = submit(
        &s,
        device.corim("http://arm.com/psa/iot/1", true, "w"),
        LEGACY_MT,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM endorsements"), "3");
    async fn rows_per_verify(s: &Standin, device: &Device) -> u64 {
        let before = s.rows_read();
        for i in 0..5u8 {
            let nonce = [i; 32];
            let (status, body, _) = verify(s, &URL_SAFE.encode(nonce), device.token(&nonce)).await;
            assert_eq!(status, 200);
            assert_eq!(
                ear::ear_status(body["result"].as_str().unwrap(), None),
                Ok(EarStatus::Affirming)
            );
        }
        (s.rows_read() - before) / 5
    }
    // One trust anchor row and three reference-value rows per verification.
    assert_eq!(rows_per_verify(&s, &device).await, 1 + 3);
    // Re-provisioning in the K-V era inserts duplicates; add 60 000 of them the fast way.
    pg.psql(&db, "INSERT INTO endorsements (kv_key, kv_val) SELECT kv_key, kv_val FROM endorsements, generate_series(1, 20000)");
    let stored: u64 = pg
        .psql(&db, "SELECT count(*) FROM endorsements")
        .parse()
        .unwrap();
    assert_eq!(stored, 60_003);
    // Every duplicate is read on every verification (what made Trial 3 collapse); how long
    // that takes is a benchmark's business, not a test's.
    assert_eq!(rows_per_verify(&s, &device).await, 1 + stored);
    s.shutdown().await;
}

/// The readiness gate looks again on transient failures (a service still starting, random
/// 500s) within its patience, and fails at once on a semantic one.
#[tokio::test]
async fn the_readiness_gate_retries_transient_failures_and_not_semantic_ones() {
    use std::sync::Arc;
    use trialrunner::load::tasks::Target;
    use trialrunner::provider::TargetCheck;
    use trialrunner::readiness::ServiceCheck;
    let target = |s: &Standin, release: &str| {
        Arc::new(Target {
            provisioning: s.url(),
            verification: s.url(),
            release: ReleaseProfile::parse(release).unwrap(),
            tokens: None,
            http_tasks: Default::default(),
            tls: Default::default(),
        })
    };
    // 30 % of the answers are 500s: each look of ~5 requests mostly fails; the gate keeps looking.
    let flaky = start(StandinConfig {
        faults: Faults {
            error_rate: 0.3,
            ..Faults::default()
        },
        ..config("v0.0.2602")
    })
    .await;
    for _ in 0..5 {
        ServiceCheck::new(target(&flaky, "v0.0.2602"))
            .with_patience(Duration::from_secs(60))
            .check()
            .await
            .expect("ready within its patience despite the 500s");
    }
    // A service whose VTS is not up for 2 s: ready once it is.
    let starting = start(StandinConfig {
        faults: Faults {
            slow_start: Duration::from_secs(2),
            ..Faults::default()
        },
        ..config("v0.0.2602")
    })
    .await;
    let report = ServiceCheck::new(target(&starting, "v0.0.2602"))
        .with_patience(Duration::from_secs(30))
        .check()
        .await
        .unwrap();
    assert!(
        report.notes.iter().any(|n| n.starts_with("ready after")),
        "{:?}",
        report.notes
    );
    // A contract mismatch (the stand-in speaks the corim-store era, the check the K-V era):
    // 415, permanent, no waiting.
    let other = start(config("v0.0.2604")).await;
    let err = ServiceCheck::new(target(&other, "v0.0.2602"))
        .with_patience(Duration::from_secs(30))
        .check()
        .await
        .unwrap_err();
    assert_eq!(
        other.served_on("GET /.well-known/veraison/provisioning"),
        1,
        "failed at once, after one look: {err}"
    );
    assert!(err.to_string().contains("415"), "{err}");
}

/// `trialrunner standin` stopped with SIGTERM says it is stopping the stand-in (not a
/// campaign's "restoring infrastructure") and exits 0 within a few seconds.
#[test]
fn the_standin_command_stops_on_sigterm_saying_what_it_stops() {
    let port = common::free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trialrunner"));
    cmd.args(["standin", "--listen", &format!("127.0.0.1:{port}")]);
    let run = common::watch::Watched::spawn(cmd);
    run.wait_for("stand-in listening on", Duration::from_secs(60));
    run.signal(libc::SIGTERM);
    let (status, output, _) = run.finish(Instant::now(), Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{output}");
    assert!(
        output.contains("SIGTERM: stopping the stand-in"),
        "{output}"
    );
    assert!(!output.contains("restoring infrastructure"), "{output}");
}
