//! Event arguments: how Rust values become the argument list of an event or an ack, and back.
//!
//! JavaScript passes arguments one by one (`socket.emit("ev", a, b)`); Rust passes one value.
//! The rule, the same for `emit`, acks and [`Data`](crate::extract::Data):
//! - a tuple is an argument list: `emit("ev", (a, b))` sends two arguments;
//! - [`Args`] is an argument list of any length (what a handler received, to send it on);
//! - `()` is no argument at all;
//! - any other value is one argument: `emit("ev", vec![1, 2])` sends one array.

use serde::de::DeserializeOwned;
use serde::ser::{Impossible, Serialize, Serializer};
use serde_json::Value;

/// Every argument of an event or ack, as the client sent them (binary placeholders included).
///
/// As a handler argument it extracts all arguments; given to `emit` it sends each element as
/// one argument, so `socket.emit("echo", &args)` forwards an event unchanged.
/// It is the one argument type that never falls under the "one argument reads as itself" rule.
///
/// ```
/// use sio_core::Args;
/// use serde_json::json;
///
/// let args = Args(vec![json!(1), json!("2")]);
/// assert_eq!(sio_core::__private::to_args(&args).unwrap(), vec![json!(1), json!("2")]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args(pub Vec<Value>);

/// The newtype name that marks [`Args`] for the argument serializer.
const ARGS_TOKEN: &str = "$sio::Args";

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(ARGS_TOKEN, &self.0)
    }
}

/// Turns a value into an argument list, following the rule of this module.
pub fn to_args<T: Serialize + ?Sized>(data: &T) -> Result<Vec<Value>, serde_json::Error> {
    match data.serialize(Shape) {
        Err(ShapeOf::Unit) => Ok(Vec::new()),
        Err(ShapeOf::List) => match serde_json::to_value(data)? {
            Value::Array(args) => Ok(args),
            other => Ok(vec![other]),
        },
        Err(ShapeOf::One) | Ok(()) => Ok(vec![serde_json::to_value(data)?]),
    }
}

/// Reads an argument list as `T`: one argument is read as `T` itself, none or several as a
/// `T` built from the whole list (a tuple, a `Vec`...). ([`Args`] takes the list as it is.)
pub(crate) fn from_args<T: DeserializeOwned>(mut args: Vec<Value>) -> Result<T, serde_json::Error> {
    if args.len() == 1
        && let Some(one) = args.pop()
    {
        match serde_json::from_value::<T>(one.clone()) {
            Ok(value) => return Ok(value),
            // A one-element tuple or list still reads from the list.
            Err(err) => {
                return serde_json::from_value(Value::Array(vec![one])).map_err(|_| err);
            }
        }
    }
    serde_json::from_value(Value::Array(args))
}

/// What a value looks like at its top level; the "error" of the [`Shape`] probe.
#[derive(Debug)]
enum ShapeOf {
    Unit,
    List,
    One,
}

impl std::fmt::Display for ShapeOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for ShapeOf {}

impl serde::ser::Error for ShapeOf {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        ShapeOf::One
    }
}

/// A serializer that stops at the first call and reports which kind of value it was given.
struct Shape;

macro_rules! one {
    ($($name:ident($($ty:ty),*);)*) => {
        $(fn $name(self, $(_: $ty),*) -> Result<(), ShapeOf> { Err(ShapeOf::One) })*
    };
}

impl Serializer for Shape {
    type Ok = ();
    type Error = ShapeOf;
    type SerializeSeq = Impossible<(), ShapeOf>;
    type SerializeTuple = Impossible<(), ShapeOf>;
    type SerializeTupleStruct = Impossible<(), ShapeOf>;
    type SerializeTupleVariant = Impossible<(), ShapeOf>;
    type SerializeMap = Impossible<(), ShapeOf>;
    type SerializeStruct = Impossible<(), ShapeOf>;
    type SerializeStructVariant = Impossible<(), ShapeOf>;

    one! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_u8(u8); serialize_u16(u16); serialize_u32(u32);
        serialize_u64(u64); serialize_f32(f32); serialize_f64(f64); serialize_char(char);
        serialize_str(&str); serialize_bytes(&[u8]); serialize_none();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_unit(self) -> Result<(), ShapeOf> {
        Err(ShapeOf::Unit)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), ShapeOf> {
        Err(ShapeOf::One)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), ShapeOf> {
        if name == ARGS_TOKEN {
            Err(ShapeOf::List)
        } else {
            // A newtype is its content: look through it.
            value.serialize(Shape)
        }
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), ShapeOf> {
        Err(ShapeOf::One)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, ShapeOf> {
        Err(ShapeOf::One)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, ShapeOf> {
        Err(ShapeOf::List)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, ShapeOf> {
        Err(ShapeOf::One)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, ShapeOf> {
        Err(ShapeOf::One)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, ShapeOf> {
        Err(ShapeOf::One)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, ShapeOf> {
        Err(ShapeOf::One)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, ShapeOf> {
        Err(ShapeOf::One)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tuples_and_args_are_lists_everything_else_one_argument() {
        assert_eq!(to_args(&()).unwrap(), Vec::<Value>::new());
        assert_eq!(to_args(&(1, "a")).unwrap(), vec![json!(1), json!("a")]);
        assert_eq!(to_args(&(1,)).unwrap(), vec![json!(1)]);
        assert_eq!(to_args(&vec![1, 2]).unwrap(), vec![json!([1, 2])]);
        assert_eq!(to_args(&json!([1, 2])).unwrap(), vec![json!([1, 2])]);
        assert_eq!(to_args(&json!({"a": 1})).unwrap(), vec![json!({"a": 1})]);
        assert_eq!(to_args("hi").unwrap(), vec![json!("hi")]);
        assert_eq!(
            to_args(&Args(vec![json!(1), json!(2)])).unwrap(),
            vec![json!(1), json!(2)]
        );
        assert_eq!(to_args(&Args(vec![])).unwrap(), Vec::<Value>::new());
    }

    #[test]
    fn one_argument_reads_as_itself_several_as_a_list() {
        assert_eq!(from_args::<i32>(vec![json!(1)]).unwrap(), 1);
        assert_eq!(from_args::<(i32,)>(vec![json!(1)]).unwrap(), (1,));
        assert_eq!(
            from_args::<(i32, String)>(vec![json!(1), json!("a")]).unwrap(),
            (1, "a".to_string())
        );
        assert_eq!(
            from_args::<Vec<i32>>(vec![json!([1, 2])]).unwrap(),
            vec![1, 2]
        );
        assert_eq!(
            from_args::<Vec<i32>>(vec![json!(1), json!(2)]).unwrap(),
            vec![1, 2]
        );
        assert!(from_args::<i32>(vec![json!("x")]).is_err());
    }
}
