//! Unit tests of the checks before a command: a fake API server (`tower_test::mock`) answers the requests.

use http::{Request, Response};
use kube::client::Body;

use super::*;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn fake() -> (Kube, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "kb");
    (
        Kube {
            client,
            namespace: "team".into(),
            url: "https://fake".into(),
        },
        handle,
    )
}

fn respond(
    send: tower_test::mock::SendResponse<Response<Body>>,
    code: u16,
    body: serde_json::Value,
) {
    let bytes = serde_json::to_vec(&body).unwrap();
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(bytes))
            .unwrap(),
    );
}

fn status(code: u16, reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
        "reason": reason, "message": message})
}

/// Answers the namespace GET with `ns_code`, then each access review: allowed unless its verb is in `denied`.
async fn serve(mut handle: Handle, ns_code: u16, reviews: usize, denied: &'static [&'static str]) {
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request.uri().path(), "/api/v1/namespaces/team");
    match ns_code {
        200 => respond(
            send,
            200,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team"}}),
        ),
        404 => respond(
            send,
            404,
            status(404, "NotFound", "namespaces \"team\" not found"),
        ),
        code => respond(send, code, status(code, "Forbidden", "forbidden")),
    }
    for _ in 0..reviews {
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(
            request.uri().path(),
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        );
        let body = request.into_body().collect_bytes().await.unwrap();
        let mut review: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let attributes = &review["spec"]["resourceAttributes"];
        assert_eq!(attributes["namespace"], "team");
        let allowed = !denied.contains(&attributes["verb"].as_str().unwrap());
        review["status"] = serde_json::json!({"allowed": allowed});
        respond(send, 201, review);
    }
}

#[tokio::test]
async fn a_missing_namespace_is_named() {
    let (kube, handle) = fake();
    let server = tokio::spawn(serve(handle, 404, 0, &[]));
    let err = preflight(&kube, STATUS_RIGHTS).await.unwrap_err();
    server.await.unwrap();
    assert!(
        matches!(err, Error::NamespaceMissing { ref namespace } if namespace == "team"),
        "{err:?}"
    );
    assert!(err.hint().unwrap().contains("kb cluster-setup -n team"));
}

#[tokio::test]
async fn every_missing_right_is_listed() {
    let (kube, handle) = fake();
    let server = tokio::spawn(serve(handle, 200, RUN_RIGHTS.len(), &["create"]));
    let err = preflight(&kube, RUN_RIGHTS).await.unwrap_err();
    server.await.unwrap();
    assert_eq!(
        err.to_string(),
        "missing permissions in namespace `team`: `create batch/jobs`, `create secrets`, `create pods/portforward`"
    );
}

#[tokio::test]
async fn a_user_who_may_not_read_namespaces_is_still_checked() {
    let (kube, handle) = fake();
    let server = tokio::spawn(serve(handle, 403, STATUS_RIGHTS.len(), &[]));
    preflight(&kube, STATUS_RIGHTS).await.unwrap();
    server.await.unwrap();
}
