//! Pure (no IO) mapping between what non-Java callers send and the Hessian values a Java Dubbo provider
//! expects, by the declared Java parameter types.
//!
//! * [`java_type`]: Java types in every spelling (descriptors, source names, `Class.getName()` arrays,
//!   `parameterTypesString` lists) as one [`JavaType`], rendered back as the wire descriptor.
//! * [`form_text`]: a form field's text as an argument of its declared type ([`typed_text`]).
//! * [`from_json`]: JSON as an argument of its declared type, or by inference ([`from_json()`], [`infer`]).
//! * [`to_json`]: a provider's answer as JSON, references resolved within limits ([`to_json()`]), and the
//!   string view of a value Dubbo's routing compares ([`text_of`]).
//! * [`invoke`]: the body of a JSON generic call (dubbo-go-pixiu's shapes) and the typed or `$invoke`
//!   arguments it becomes.
//!
//! Every refusal is a [`TypeError`] (or an [`ArgumentError`] naming the argument).
#![forbid(unsafe_code)]

pub mod bignum;
pub mod date;
mod error;
pub mod form_text;
pub mod from_json;
pub mod invoke;
pub mod java_type;
pub mod json;
pub mod to_json;

pub use error::TypeError;
pub use form_text::typed_text;
pub use from_json::{from_json, infer};
pub use invoke::{
    generic_arguments, parse_invoke_body, typed_arguments, ArgumentError, InvokeBody, GENERIC_DESCRIPTOR,
    GENERIC_METHOD,
};
pub use java_type::{
    descriptor_of, java_names, parse_descriptor, parse_descriptors, parse_java_name, parse_type_list,
    JavaType, Primitive,
};
pub use json::{Json, Number};
pub use to_json::{text_of, text_of_within, to_json, RenderLimits};
