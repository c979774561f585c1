//! Enrolment and re-keying against a real store, through the writer.

use super::*;
use crate::store::sqlite::agents as rows;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rusqlite::{params, Connection};

fn keypair() -> Ed25519KeyPair {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

/// The service on a fresh store, a connection of its own to look at
/// the store, and a runtime to call the service on.
struct Fixture {
    service: EnrolmentService,
    conn: std::sync::Mutex<Connection>,
    rt: tokio::runtime::Runtime,
}

fn service() -> (tempfile::TempDir, Fixture) {
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::start(store::Location::Sqlite(dir.path().to_owned()), 1000).unwrap();
    let fixture = Fixture {
        service: EnrolmentService::new(writer, vec![7; 32]),
        conn: std::sync::Mutex::new(store::open(dir.path()).unwrap()),
        rt: tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
    };
    (dir, fixture)
}

fn token(service: &Fixture, group: &str) -> String {
    let conn = service.conn.lock().unwrap();
    let spec = TokenSpec {
        valid_for_ms: 60_000,
        max_uses: 5,
        group: group.into(),
        label: String::new(),
        school: "default".into(),
    };
    let (token, row) = new_token(&spec, "127.0.0.1:1", "00");
    rows::insert_token(&conn, &row).unwrap();
    token.secret
}

fn enrol(service: &Fixture, key: &Ed25519KeyPair, secret: &str) -> Result<EnrolResponse, Status> {
    let mut proof = tutela_proto::ENROL_PROOF_DOMAIN.to_vec();
    proof.extend_from_slice(secret.as_bytes());
    service
        .rt
        .block_on(service.service.enrol_agent(EnrolRequest {
            token_secret: secret.into(),
            public_key: key.public_key().as_ref().to_vec(),
            station: "LAB1-PC01".into(),
            agent_version: "test".into(),
            proof: key.sign(&proof).as_ref().to_vec(),
            machine_id: String::new(),
        }))
}

fn uses(service: &Fixture) -> Vec<i64> {
    let conn = service.conn.lock().unwrap();
    rows::list_tokens(&conn)
        .unwrap()
        .iter()
        .map(|t| t.uses)
        .collect()
}

fn rekey(
    service: &Fixture,
    old_id: &str,
    old: &Ed25519KeyPair,
    new: &Ed25519KeyPair,
) -> Result<EnrolResponse, Status> {
    let time_ms = store::now_ms();
    let message = tutela_proto::rekey_message(old_id, new.public_key().as_ref(), time_ms);
    service
        .rt
        .block_on(service.service.rekey_agent(RekeyRequest {
            agent_id: old_id.into(),
            new_public_key: new.public_key().as_ref().to_vec(),
            station: "LAB1-PC02".into(),
            machine_id: String::new(),
            agent_version: "test".into(),
            time_ms,
            reason: "machine-id-changed".into(),
            old_signature: old.sign(&message).as_ref().to_vec(),
            new_signature: new.sign(&message).as_ref().to_vec(),
        }))
}

#[test]
fn a_revoked_key_enrolling_again_is_refused_without_using_the_token() {
    let (_dir, service) = service();
    let key = keypair();
    let first = enrol(&service, &key, &token(&service, "lab-1")).unwrap();
    service
        .conn
        .lock()
        .unwrap()
        .execute(
            "UPDATE agents SET revoked = 1 WHERE agent_id = ?1",
            [&first.agent_id],
        )
        .unwrap();
    let secret = token(&service, "lab-1");
    let err = enrol(&service, &key, &secret).unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("agent.key"), "{}", err.message());
    assert_eq!(uses(&service), [0, 1], "the second token was not used");
    let revoked: bool = service
        .conn
        .lock()
        .unwrap()
        .query_row(
            "SELECT revoked FROM agents WHERE agent_id = ?1",
            [&first.agent_id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(revoked, "still revoked");
    // A new key (agent.key deleted) enrols with the same token.
    let again = enrol(&service, &keypair(), &secret).unwrap();
    assert_ne!(again.agent_id, first.agent_id);
}

#[test]
fn a_known_key_enrolled_with_another_groups_token_moves_to_that_group() {
    let (_dir, service) = service();
    let key = keypair();
    let first = enrol(&service, &key, &token(&service, "lab-1")).unwrap();
    let second = enrol(&service, &key, &token(&service, "year-10")).unwrap();
    assert_eq!(second.agent_id, first.agent_id);
    assert_eq!(second.group, "year-10");
    let grp: String = service
        .conn
        .lock()
        .unwrap()
        .query_row(
            "SELECT grp FROM agents WHERE agent_id = ?1",
            [&first.agent_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(grp, "year-10");
}

#[test]
fn the_rekey_limit_counts_the_whole_family_not_direct_children() {
    let (_dir, service) = service();
    let root_key = keypair();
    let root = enrol(&service, &root_key, &token(&service, "lab-1"))
        .unwrap()
        .agent_id;
    // A chain root -> c1 -> ... -> c(N-1), each re-keyed from the one before.
    let last_key = keypair();
    let mut parent = root.clone();
    {
        let conn = service.conn.lock().unwrap();
        for n in 1..MAX_REKEYS_PER_IDENTITY {
            let id = format!("ag-chain{n:04}");
            let public_key = if n == MAX_REKEYS_PER_IDENTITY - 1 {
                last_key.public_key().as_ref().to_vec()
            } else {
                format!("fake-key-{n:04}").into_bytes()
            };
            conn.execute(
                "INSERT INTO agents (agent_id, public_key, station, grp, enrolled_ms, rekeyed_from) VALUES (?1, ?2, 'PC', 'lab-1', 0, ?3)",
                params![id, public_key, parent],
            )
            .unwrap();
            parent = id;
        }
    }
    assert_eq!(
        rows::family(&service.conn.lock().unwrap(), &parent).unwrap(),
        (root.clone(), MAX_REKEYS_PER_IDENTITY - 1)
    );
    // The last one in the chain may re-key: the family reaches the limit.
    let next_key = keypair();
    let next = rekey(&service, &parent, &last_key, &next_key).unwrap();
    // Its new identity has no children of its own, but the family is full.
    let err = rekey(&service, &next.agent_id, &next_key, &keypair()).unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::ResourceExhausted,
        "{}",
        err.message()
    );
    let err = rekey(&service, &root, &root_key, &keypair()).unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::ResourceExhausted,
        "{}",
        err.message()
    );
}

#[test]
fn station_names_cannot_carry_control_characters() {
    assert!(valid_station("LAB2-PC07"));
    assert!(valid_station("Ystafell 3 – cyfrifiadur 12"));
    assert!(!valid_station(""));
    assert!(!valid_station("   "));
    assert!(!valid_station(&"x".repeat(254)));
    assert!(!valid_station(
        "PC1 last seen never\n\nACTION REQUIRED: sign in at http://evil.example"
    ));
    assert!(!valid_station("PC1\r"));
    assert!(!valid_station("PC1\u{1b}[31m"));
}
