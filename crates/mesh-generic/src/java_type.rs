//! Java parameter types in every form users send them, as one model, rendered back as Dubbo writes them.
//!
//! Accepted spellings of one type:
//! * JVM descriptors: `I`, `Ljava/lang/String;`, `[I`, `[[Ljava/lang/String;`;
//! * source / `Class.getName()` names: `int`, `java.lang.Integer`, `java.lang.String`, `int[]`,
//!   `java.lang.String[][]`, `a.b.Outer$Inner`, and `Class.getName()`'s array form `[Ljava.lang.String;`.
//!
//! A list of types (the challenge's `parameterTypesString`, Pixiu's `types`, the
//! `x-dubbo-service-method-overloading` header) is either one concatenated descriptor string
//! (`Ljava/lang/String;I`) or comma-separated names or descriptors (`java.lang.String, int`): see
//! [`parse_type_list`].

use std::fmt::{self, Write as _};

use crate::TypeError;

/// Most parameters of one method (the JVM's own limit).
pub const MAX_PARAMS: usize = 255;
/// Most array dimensions (the JVM's own limit).
pub const MAX_ARRAY_DIMS: usize = 255;
/// Longest class name accepted, in bytes.
pub const MAX_CLASS_NAME: usize = 512;

/// A Java primitive type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primitive {
    Boolean,
    Byte,
    Char,
    Short,
    Int,
    Long,
    Float,
    Double,
}

impl Primitive {
    /// All eight, in descriptor-code order of the JVM spec table.
    pub const ALL: [Primitive; 8] = [
        Primitive::Boolean,
        Primitive::Byte,
        Primitive::Char,
        Primitive::Short,
        Primitive::Int,
        Primitive::Long,
        Primitive::Float,
        Primitive::Double,
    ];

    /// The descriptor letter: `Z B C S I J F D`.
    pub fn code(self) -> char {
        match self {
            Primitive::Boolean => 'Z',
            Primitive::Byte => 'B',
            Primitive::Char => 'C',
            Primitive::Short => 'S',
            Primitive::Int => 'I',
            Primitive::Long => 'J',
            Primitive::Float => 'F',
            Primitive::Double => 'D',
        }
    }

    /// The keyword: `boolean`, `int`, ... (also hessian-lite's list type suffix: `[int`).
    pub fn name(self) -> &'static str {
        match self {
            Primitive::Boolean => "boolean",
            Primitive::Byte => "byte",
            Primitive::Char => "char",
            Primitive::Short => "short",
            Primitive::Int => "int",
            Primitive::Long => "long",
            Primitive::Float => "float",
            Primitive::Double => "double",
        }
    }

    /// The wrapper class: `java.lang.Integer`, ...
    pub fn boxed_name(self) -> &'static str {
        match self {
            Primitive::Boolean => "java.lang.Boolean",
            Primitive::Byte => "java.lang.Byte",
            Primitive::Char => "java.lang.Character",
            Primitive::Short => "java.lang.Short",
            Primitive::Int => "java.lang.Integer",
            Primitive::Long => "java.lang.Long",
            Primitive::Float => "java.lang.Float",
            Primitive::Double => "java.lang.Double",
        }
    }

    fn from_code(c: u8) -> Option<Primitive> {
        Primitive::ALL.into_iter().find(|p| p.code() as u8 == c)
    }

    fn from_name(name: &str) -> Option<Primitive> {
        Primitive::ALL.into_iter().find(|p| p.name() == name)
    }

    fn from_boxed_name(name: &str) -> Option<Primitive> {
        Primitive::ALL.into_iter().find(|p| p.boxed_name() == name)
    }
}

/// One Java parameter (or result) type, as far as the mapping to Hessian needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JavaType {
    /// `int`, `long`, ...: never null.
    Primitive(Primitive),
    /// `java.lang.Integer`, ...: the primitive's values or null.
    Boxed(Primitive),
    /// `java.lang.String`.
    String,
    /// `java.lang.Object` (and `java.io.Serializable`): any value, mapped by what it looks like.
    Object,
    /// `java.math.BigDecimal`.
    BigDecimal,
    /// `java.math.BigInteger`.
    BigInteger,
    /// `java.util.Date`.
    Date,
    /// A `java.util.Collection` (`java.util.List`, `ArrayList`, `Set`, ...): the class name.
    Collection(String),
    /// A `java.util.Map` (`Map`, `HashMap`, `TreeMap`, ...): the class name.
    Map(String),
    /// `T[]`.
    Array(Box<JavaType>),
    /// Any other class: a POJO (or an enum, written as an object with a `name` field).
    Class(String),
}

/// Collection classes recognised by name (the provider picks the concrete class from the declared type).
const COLLECTIONS: &[&str] = &[
    "java.lang.Iterable",
    "java.util.Collection",
    "java.util.List",
    "java.util.ArrayList",
    "java.util.LinkedList",
    "java.util.Vector",
    "java.util.Set",
    "java.util.HashSet",
    "java.util.LinkedHashSet",
    "java.util.SortedSet",
    "java.util.NavigableSet",
    "java.util.TreeSet",
    "java.util.Queue",
    "java.util.Deque",
    "java.util.ArrayDeque",
];

/// Map classes recognised by name.
const MAPS: &[&str] = &[
    "java.util.Map",
    "java.util.HashMap",
    "java.util.LinkedHashMap",
    "java.util.SortedMap",
    "java.util.NavigableMap",
    "java.util.TreeMap",
    "java.util.Hashtable",
    "java.util.concurrent.ConcurrentMap",
    "java.util.concurrent.ConcurrentHashMap",
];

impl JavaType {
    /// The type of a class name (dotted, no array suffix, already checked).
    fn of_class(name: &str) -> JavaType {
        if let Some(p) = Primitive::from_boxed_name(name) {
            return JavaType::Boxed(p);
        }
        match name {
            "java.lang.String" => JavaType::String,
            "java.lang.Object" | "java.io.Serializable" => JavaType::Object,
            "java.math.BigDecimal" => JavaType::BigDecimal,
            "java.math.BigInteger" => JavaType::BigInteger,
            "java.util.Date" => JavaType::Date,
            _ if COLLECTIONS.contains(&name) => JavaType::Collection(name.to_owned()),
            _ if MAPS.contains(&name) => JavaType::Map(name.to_owned()),
            _ => JavaType::Class(name.to_owned()),
        }
    }

    /// The class name (`Class.getName()` without the array form): `int`, `java.lang.Integer`,
    /// `com.example.User`; arrays are `T[]` (as Dubbo's `ReflectUtils.getName` writes the types of a
    /// generic `$invoke`).
    pub fn java_name(&self) -> String {
        let mut s = String::new();
        self.write_java_name(&mut s);
        s
    }

    fn write_java_name(&self, out: &mut String) {
        match self {
            JavaType::Primitive(p) => out.push_str(p.name()),
            JavaType::Boxed(p) => out.push_str(p.boxed_name()),
            JavaType::Array(c) => {
                c.write_java_name(out);
                out.push_str("[]");
            }
            other => out.push_str(other.class_name()),
        }
    }

    /// The class name of a non-primitive, non-array type.
    fn class_name(&self) -> &str {
        match self {
            JavaType::Primitive(p) => p.name(),
            JavaType::Boxed(p) => p.boxed_name(),
            JavaType::String => "java.lang.String",
            JavaType::Object => "java.lang.Object",
            JavaType::BigDecimal => "java.math.BigDecimal",
            JavaType::BigInteger => "java.math.BigInteger",
            JavaType::Date => "java.util.Date",
            JavaType::Collection(n) | JavaType::Map(n) | JavaType::Class(n) => n,
            JavaType::Array(_) => "[",
        }
    }

    /// The JVM descriptor, as Dubbo puts it on the wire: `I`, `Ljava/lang/String;`, `[I`.
    pub fn descriptor(&self) -> String {
        let mut s = String::new();
        self.write_descriptor(&mut s);
        s
    }

    /// Appends the descriptor to `out`.
    pub fn write_descriptor(&self, out: &mut String) {
        match self {
            JavaType::Primitive(p) => out.push(p.code()),
            JavaType::Array(c) => {
                out.push('[');
                c.write_descriptor(out);
            }
            other => {
                out.push('L');
                for c in other.class_name().chars() {
                    out.push(if c == '.' { '/' } else { c });
                }
                out.push(';');
            }
        }
    }

    /// The type string hessian-lite writes for an array of this component type (`[int`, `[string`,
    /// `[object`, `[date`, `[java.lang.Integer`, `[[int`): `None` for non-arrays. `byte[]` is written as
    /// binary and `char[]` as a string, never as a list.
    pub fn hessian_list_type(&self) -> Option<String> {
        let JavaType::Array(c) = self else {
            return None;
        };
        let mut s = String::from("[");
        match &**c {
            JavaType::Primitive(p) => s.push_str(p.name()),
            JavaType::String => s.push_str("string"),
            JavaType::Object => s.push_str("object"),
            JavaType::Date => s.push_str("date"),
            inner @ JavaType::Array(_) => s.push_str(&inner.hessian_list_type()?[..]),
            other => s.push_str(other.class_name()),
        }
        Some(s)
    }

    /// Whether values of this type are values, not structures: primitives and their boxes, `String`,
    /// `BigDecimal`, `BigInteger`, `Date`, and arrays of them (`byte[]`, `char[]`, `int[]`, ...). Dubbo's
    /// `PojoUtils` passes such values through a generic call as they are.
    pub fn is_value_type(&self) -> bool {
        match self {
            JavaType::Primitive(_)
            | JavaType::Boxed(_)
            | JavaType::String
            | JavaType::BigDecimal
            | JavaType::BigInteger
            | JavaType::Date => true,
            JavaType::Array(c) => c.is_value_type(),
            _ => false,
        }
    }

    /// Whether null is a value of this type (everything but primitives).
    pub fn is_nullable(&self) -> bool {
        !matches!(self, JavaType::Primitive(_))
    }
}

impl fmt::Display for JavaType {
    /// The Java name ([`JavaType::java_name`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JavaType::Array(c) => write!(f, "{c}[]"),
            other => f.write_str(other.class_name()),
        }
    }
}

/// Parses exactly one descriptor (`I`, `[Ljava/lang/String;`). `V` (void) is not a parameter type.
pub fn parse_descriptor(desc: &str) -> Result<JavaType, TypeError> {
    let (t, rest) = descriptor_prefix(desc)?;
    if !rest.is_empty() {
        return Err(TypeError::BadTypeName("trailing characters after a descriptor"));
    }
    Ok(t)
}

/// Parses a concatenated descriptor string (`Ljava/lang/String;I[J`, `""` for none).
pub fn parse_descriptors(mut desc: &str) -> Result<Vec<JavaType>, TypeError> {
    let mut out = Vec::new();
    while !desc.is_empty() {
        if out.len() == MAX_PARAMS {
            return Err(TypeError::TooManyTypes { max: MAX_PARAMS });
        }
        let (t, rest) = descriptor_prefix(desc)?;
        out.push(t);
        desc = rest;
    }
    Ok(out)
}

/// The descriptor at the start of `desc` and what follows it.
fn descriptor_prefix(desc: &str) -> Result<(JavaType, &str), TypeError> {
    let dims = desc.bytes().take_while(|&b| b == b'[').count();
    if dims > MAX_ARRAY_DIMS {
        return Err(TypeError::BadTypeName("more than 255 array dimensions"));
    }
    let base = &desc[dims..];
    let (mut t, rest) = match base.as_bytes().first() {
        Some(b'L') => {
            let end = base
                .find(';')
                .ok_or(TypeError::BadTypeName("descriptor `L...` without `;`"))?;
            let internal = &base[1..end];
            if internal.contains('.') {
                return Err(TypeError::BadTypeName("`.` inside a descriptor"));
            }
            let dotted = internal.replace('/', ".");
            check_class_name(&dotted)?;
            (JavaType::of_class(&dotted), &base[end + 1..])
        }
        Some(&c) => match Primitive::from_code(c) {
            Some(p) => (JavaType::Primitive(p), &base[1..]),
            None if c == b'V' => return Err(TypeError::BadTypeName("void is not a parameter type")),
            None => return Err(TypeError::BadTypeName("not a descriptor")),
        },
        None => return Err(TypeError::BadTypeName("empty descriptor")),
    };
    for _ in 0..dims {
        t = JavaType::Array(Box::new(t));
    }
    Ok((t, rest))
}

/// Parses one Java type name: `int`, `java.lang.Integer`, `int[]`, `com.x.User[][]`, `[I`,
/// `[Ljava.lang.String;`; also a single descriptor (`Ljava/lang/String;`, `[I`). A bare `I`, `J`, ... is a
/// primitive descriptor, not a class in the default package.
pub fn parse_java_name(name: &str) -> Result<JavaType, TypeError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(TypeError::BadTypeName("empty type name"));
    }
    if name.starts_with('[') {
        // `Class.getName()` array form (dots) or a descriptor (slashes): the same grammar once dotted.
        let desc = if name.contains('/') {
            name.to_owned()
        } else {
            name.replace('.', "/")
        };
        return parse_descriptor(&desc);
    }
    if name == "V" {
        return Err(TypeError::BadTypeName("void is not a parameter type"));
    }
    if name.len() == 1 {
        if let Some(p) = Primitive::from_code(name.as_bytes()[0]) {
            return Ok(JavaType::Primitive(p));
        }
    }
    if name.starts_with('L') && name.ends_with(';') {
        return parse_descriptor(name);
    }
    let mut base = name;
    let mut dims = 0;
    while let Some(b) = base.strip_suffix("[]") {
        base = b.trim_end();
        dims += 1;
        if dims > MAX_ARRAY_DIMS {
            return Err(TypeError::BadTypeName("more than 255 array dimensions"));
        }
    }
    let mut t = match Primitive::from_name(base) {
        Some(p) => JavaType::Primitive(p),
        None if base == "void" => return Err(TypeError::BadTypeName("void is not a parameter type")),
        None => {
            check_class_name(base)?;
            JavaType::of_class(base)
        }
    };
    for _ in 0..dims {
        t = JavaType::Array(Box::new(t));
    }
    Ok(t)
}

/// Parses a list of parameter types: a concatenated descriptor string if the whole text is one
/// (`Ljava/lang/String;I`, `""` = none), otherwise comma-separated names or descriptors
/// (`java.lang.String, int, [B`).
pub fn parse_type_list(text: &str) -> Result<Vec<JavaType>, TypeError> {
    match parse_descriptors(text) {
        Ok(types) => return Ok(types),
        Err(e @ TypeError::TooManyTypes { .. }) => return Err(e),
        Err(_) => {}
    }
    let mut out = Vec::new();
    for name in text.split(',') {
        if out.len() == MAX_PARAMS {
            return Err(TypeError::TooManyTypes { max: MAX_PARAMS });
        }
        out.push(parse_java_name(name)?);
    }
    Ok(out)
}

/// The concatenated descriptor of `types` (what Dubbo's request carries as the parameter types).
pub fn descriptor_of(types: &[JavaType]) -> String {
    let mut s = String::new();
    for t in types {
        t.write_descriptor(&mut s);
    }
    s
}

/// Checks a dotted class name: segments of letters, digits, `_` and `$`, not starting with a digit.
fn check_class_name(name: &str) -> Result<(), TypeError> {
    if name.len() > MAX_CLASS_NAME {
        return Err(TypeError::BadTypeName("class name longer than 512 bytes"));
    }
    for seg in name.split('.') {
        let mut chars = seg.chars();
        match chars.next() {
            Some(c) if c.is_alphabetic() || c == '_' || c == '$' => {}
            _ => return Err(TypeError::BadTypeName("not a Java class name")),
        }
        if !chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            return Err(TypeError::BadTypeName("not a Java class name"));
        }
    }
    Ok(())
}

/// `types` as a comma-separated list of Java names (for messages and `$invoke`).
pub fn java_names(types: &[JavaType]) -> String {
    let mut s = String::new();
    for (i, t) in types.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{t}");
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn arr(t: JavaType) -> JavaType {
        JavaType::Array(Box::new(t))
    }

    #[test]
    fn every_spelling_of_a_type_is_one_value() {
        let int = JavaType::Primitive(Primitive::Int);
        for s in ["I", "int", " int "] {
            assert_eq!(parse_java_name(s).unwrap(), int, "{s}");
        }
        for s in ["Ljava/lang/Integer;", "java.lang.Integer"] {
            assert_eq!(
                parse_java_name(s).unwrap(),
                JavaType::Boxed(Primitive::Int),
                "{s}"
            );
        }
        for s in ["Ljava/lang/String;", "java.lang.String"] {
            assert_eq!(parse_java_name(s).unwrap(), JavaType::String, "{s}");
        }
        for s in ["[I", "int[]"] {
            assert_eq!(parse_java_name(s).unwrap(), arr(int.clone()), "{s}");
        }
        for s in ["[Ljava/lang/String;", "[Ljava.lang.String;", "java.lang.String[]"] {
            assert_eq!(parse_java_name(s).unwrap(), arr(JavaType::String), "{s}");
        }
        assert_eq!(
            parse_java_name("java.util.List").unwrap(),
            JavaType::Collection("java.util.List".into())
        );
        assert_eq!(
            parse_java_name("java.util.HashMap").unwrap(),
            JavaType::Map("java.util.HashMap".into())
        );
        assert_eq!(
            parse_java_name("com.example.User$Address[][]").unwrap(),
            arr(arr(JavaType::Class("com.example.User$Address".into())))
        );
        assert_eq!(
            parse_java_name("java.math.BigDecimal").unwrap(),
            JavaType::BigDecimal
        );
        assert_eq!(
            parse_java_name("Ljava/math/BigInteger;").unwrap(),
            JavaType::BigInteger
        );
        assert_eq!(parse_java_name("java.util.Date").unwrap(), JavaType::Date);
        assert_eq!(parse_java_name("java.lang.Object").unwrap(), JavaType::Object);
    }

    #[test]
    fn every_primitive_and_its_box() {
        for p in Primitive::ALL {
            let code = p.code().to_string();
            assert_eq!(parse_java_name(&code).unwrap(), JavaType::Primitive(p));
            assert_eq!(parse_java_name(p.name()).unwrap(), JavaType::Primitive(p));
            assert_eq!(parse_descriptor(&code).unwrap().descriptor(), code);
            let boxed = parse_java_name(p.boxed_name()).unwrap();
            assert_eq!(boxed, JavaType::Boxed(p));
            assert_eq!(boxed.java_name(), p.boxed_name());
            assert_eq!(
                boxed.descriptor(),
                format!("L{};", p.boxed_name().replace('.', "/"))
            );
        }
    }

    #[test]
    fn renders_the_wire_descriptor_and_java_name() {
        for (name, desc, java) in [
            ("java.lang.String", "Ljava/lang/String;", "java.lang.String"),
            ("int", "I", "int"),
            ("long[]", "[J", "long[]"),
            ("[Ljava.lang.String;", "[Ljava/lang/String;", "java.lang.String[]"),
            ("java.util.Map", "Ljava/util/Map;", "java.util.Map"),
            ("a.B[][]", "[[La/B;", "a.B[][]"),
        ] {
            let t = parse_java_name(name).unwrap();
            assert_eq!(t.descriptor(), desc, "{name}");
            assert_eq!(t.java_name(), java, "{name}");
            assert_eq!(t.to_string(), java, "{name}");
            assert_eq!(parse_descriptor(desc).unwrap(), t, "{desc}");
        }
    }

    #[test]
    fn type_lists_in_both_forms() {
        let want = vec![
            JavaType::String,
            JavaType::Primitive(Primitive::Int),
            arr(JavaType::Primitive(Primitive::Byte)),
        ];
        assert_eq!(parse_type_list("Ljava/lang/String;I[B").unwrap(), want);
        assert_eq!(parse_type_list("java.lang.String, int ,byte[]").unwrap(), want);
        assert_eq!(parse_type_list("java.lang.String,I,[B").unwrap(), want);
        assert_eq!(descriptor_of(&want), "Ljava/lang/String;I[B");
        assert_eq!(java_names(&want), "java.lang.String,int,byte[]");
        assert_eq!(parse_type_list("").unwrap(), vec![]);
        // the challenge's descriptor stays byte for byte the same
        assert_eq!(
            descriptor_of(&parse_type_list("Ljava/lang/String;").unwrap()),
            "Ljava/lang/String;"
        );
    }

    #[test]
    fn bad_types_are_errors() {
        for bad in [
            "",
            " ",
            "V",
            "void",
            "Ljava/lang/String",
            "L;",
            "[",
            "int[",
            "a..b",
            ".a",
            "a.",
            "1a",
            "a b",
            "java lang",
            "[Ljava/lang.String;",
            "[]",
            "[V",
        ] {
            assert!(parse_java_name(bad).is_err(), "{bad:?}");
        }
        assert!(parse_type_list("java.lang.String,,int").is_err());
        assert!(parse_type_list("a b").is_err());
        // a single letter that is not a primitive code is a class of the default package
        assert_eq!(parse_type_list("Q").unwrap(), vec![JavaType::Class("Q".into())]);
        let long = "a".repeat(MAX_CLASS_NAME + 1);
        assert!(parse_java_name(&long).is_err());
        let deep = format!("{}I", "[".repeat(MAX_ARRAY_DIMS + 1));
        assert!(parse_java_name(&deep).is_err());
        assert!(parse_java_name(&format!("{}I", "[".repeat(MAX_ARRAY_DIMS))).is_ok());
        let many = "I".repeat(MAX_PARAMS + 1);
        assert_eq!(
            parse_type_list(&many).unwrap_err(),
            TypeError::TooManyTypes { max: MAX_PARAMS }
        );
        assert_eq!(
            parse_type_list(&"I".repeat(MAX_PARAMS)).unwrap().len(),
            MAX_PARAMS
        );
    }

    #[test]
    fn hessian_list_types_as_hessian_lite_names_them() {
        for (name, list) in [
            ("int[]", "[int"),
            ("java.lang.String[]", "[string"),
            ("java.lang.Object[]", "[object"),
            ("java.util.Date[]", "[date"),
            ("java.lang.Integer[]", "[java.lang.Integer"),
            ("int[][]", "[[int"),
            ("com.x.User[]", "[com.x.User"),
        ] {
            assert_eq!(
                parse_java_name(name).unwrap().hessian_list_type().as_deref(),
                Some(list),
                "{name}"
            );
        }
        assert_eq!(JavaType::String.hessian_list_type(), None);
    }
}
