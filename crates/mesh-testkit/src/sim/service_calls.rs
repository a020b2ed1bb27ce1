//! The simulated service's calls as a Java 2.7 consumer writes them: `hash(String)` and `echoUser(User)`,
//! the POJO and the answer `echoUser` gives.

use bytes::BytesMut;
use mesh_dubbo::message::DUBBO_VERSION;
use mesh_dubbo::{java_string_hash, Codec, CodecError, Header, Serialization, Value};

/// The challenge's service interface.
pub const SERVICE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";
/// The one method the service exports.
pub const METHOD: &str = "hash";
/// The descriptor of `hash(String)`.
pub const PARAM_TYPES: &str = "Ljava/lang/String;";
/// A second method: `Map echoUser(User user)`, a POJO argument and a map result.
pub const USER_METHOD: &str = "echoUser";
/// The POJO class `echoUser` takes: fields `id` (long), `name` (String), `age` (int), `vip` (boolean).
pub const USER_CLASS: &str = "com.alibaba.dubbo.performance.demo.provider.User";
/// The descriptor of `echoUser(User)`.
pub const USER_PARAM_TYPES: &str = "Lcom/alibaba/dubbo/performance/demo/provider/User;";

/// The fields of a `User`, as `echoUser` reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `long id` (an `int` on the wire is accepted too, as hessian-lite reads it into a `long` field).
    pub id: i64,
    /// `String name` (not null).
    pub name: String,
    /// `int age`.
    pub age: i32,
    /// `boolean vip`.
    pub vip: bool,
}

impl User {
    /// The POJO as a Hessian object of [`USER_CLASS`] (fields in declaration order).
    pub fn to_value(&self) -> Value<'static> {
        Value::Object(mesh_dubbo::Object {
            class: USER_CLASS.into(),
            fields: vec![
                ("id".into(), Value::Long(self.id)),
                ("name".into(), Value::String(self.name.clone().into())),
                ("age".into(), Value::Int(self.age)),
                ("vip".into(), Value::Bool(self.vip)),
            ],
        })
    }

    /// Reads a `User` from a Hessian object of [`USER_CLASS`]; the reason when it is not one.
    pub fn from_value(v: &Value<'_>) -> Result<User, String> {
        let Value::Object(o) = v else {
            return Err(format!("expected a {USER_CLASS}, got a {}", v.kind()));
        };
        if o.class != USER_CLASS {
            return Err(format!("expected a {USER_CLASS}, got a {}", o.class));
        }
        let field = |name: &str| o.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let id = match field("id") {
            Some(Value::Long(i)) => *i,
            Some(Value::Int(i)) => i64::from(*i),
            other => {
                return Err(format!(
                    "field id: expected a long, got {:?}",
                    other.map(Value::kind)
                ))
            }
        };
        let name = match field("name") {
            Some(Value::String(s)) => s.to_string(),
            other => {
                return Err(format!(
                    "field name: expected a String, got {:?}",
                    other.map(Value::kind)
                ))
            }
        };
        let age = match field("age") {
            Some(Value::Int(i)) => *i,
            other => {
                return Err(format!(
                    "field age: expected an int, got {:?}",
                    other.map(Value::kind)
                ))
            }
        };
        let vip = match field("vip") {
            Some(Value::Bool(b)) => *b,
            other => {
                return Err(format!(
                    "field vip: expected a boolean, got {:?}",
                    other.map(Value::kind)
                ))
            }
        };
        Ok(User { id, name, age, vip })
    }
}

/// What `echoUser(user)` answers: an untyped map (a `java.util.HashMap`) `{"id": long, "name": String,
/// "age": int, "vip": boolean, "nameHash": int}` with `nameHash = java_string_hash(name)`.
pub fn user_answer(user: &User) -> Value<'static> {
    Value::Map(mesh_dubbo::Map {
        type_name: None,
        entries: vec![
            (Value::str("id"), Value::Long(user.id)),
            (Value::str("name"), Value::String(user.name.clone().into())),
            (Value::str("age"), Value::Int(user.age)),
            (Value::str("vip"), Value::Bool(user.vip)),
            (Value::str("nameHash"), Value::Int(java_string_hash(&user.name))),
        ],
    })
}

/// Encodes a `hash(arg)` request frame as a Java 2.7 consumer would (version "2.0.2", service version
/// "0.0.0", attachments `path`, `interface`, `version`). For tests and the load generator.
pub fn encode_hash_request(
    codec: &Codec,
    buf: &mut BytesMut,
    id: u64,
    ser: Serialization,
    arg: &str,
) -> Result<(), CodecError> {
    encode_service_request(codec, buf, id, ser, METHOD, PARAM_TYPES, &[Value::str(arg)])
}

/// Encodes an `echoUser(user)` request frame, with the head and attachments of [`encode_hash_request`].
pub fn encode_user_request(
    codec: &Codec,
    buf: &mut BytesMut,
    id: u64,
    ser: Serialization,
    user: &User,
) -> Result<(), CodecError> {
    encode_service_request(
        codec,
        buf,
        id,
        ser,
        USER_METHOD,
        USER_PARAM_TYPES,
        &[user.to_value()],
    )
}

/// A request of the simulated service's `method` as a Java 2.7 consumer writes it.
fn encode_service_request(
    codec: &Codec,
    buf: &mut BytesMut,
    id: u64,
    ser: Serialization,
    method: &str,
    param_types: &str,
    args: &[Value<'_>],
) -> Result<(), CodecError> {
    let head = mesh_dubbo::RequestHead {
        dubbo_version: DUBBO_VERSION,
        service: SERVICE,
        version: Some("0.0.0"),
        method,
        param_types,
    };
    let service = Value::str(SERVICE);
    let version = Value::str("0.0.0");
    let atts = [("path", &service), ("interface", &service), ("version", &version)];
    codec.encode_request(buf, Header::request(id, ser, true), &head, args, atts)
}
