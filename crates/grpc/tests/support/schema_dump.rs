// One line per wire-relevant fact of the apache.rocketmq.v2 schema (messages, fields with number,
// label, type and oneof, enum values, RPCs with streaming flags), sorted, so two schemas can be
// compared as text. Comments, options and declaration order do not matter on the wire and are
// left out.

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

pub const PACKAGE: &str = "apache.rocketmq.v2";

pub fn schema_lines(set: &FileDescriptorSet) -> Vec<String> {
    let mut lines = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == PACKAGE) {
        let file_name = file.name();
        for message in &file.message_type {
            message_lines(
                &format!("{PACKAGE}.{}", message.name()),
                message,
                file_name,
                &mut lines,
            );
        }
        for enumeration in &file.enum_type {
            enum_lines(
                &format!("{PACKAGE}.{}", enumeration.name()),
                enumeration,
                file_name,
                &mut lines,
            );
        }
        for service in &file.service {
            let service_name = format!("{PACKAGE}.{}", service.name());
            lines.push(format!("service {service_name} in {file_name}"));
            for method in &service.method {
                lines.push(format!(
                    "rpc {service_name}.{}({}{}) returns ({}{})",
                    method.name(),
                    if method.client_streaming() {
                        "stream "
                    } else {
                        ""
                    },
                    method.input_type(),
                    if method.server_streaming() {
                        "stream "
                    } else {
                        ""
                    },
                    method.output_type(),
                ));
            }
        }
    }
    lines.sort();
    lines
}

fn message_lines(
    full_name: &str,
    message: &DescriptorProto,
    file_name: &str,
    lines: &mut Vec<String>,
) {
    let map_entry = message.options.as_ref().is_some_and(|o| o.map_entry());
    lines.push(format!(
        "message {full_name} in {file_name}{}",
        if map_entry { " (map entry)" } else { "" }
    ));
    for field in &message.field {
        let type_text = match field.r#type() {
            Type::Message | Type::Enum | Type::Group => field.type_name().to_owned(),
            other => other
                .as_str_name()
                .trim_start_matches("TYPE_")
                .to_lowercase(),
        };
        let label = match field.label() {
            Label::Repeated => "repeated",
            Label::Required => "required",
            Label::Optional if field.proto3_optional() => "optional",
            Label::Optional => "singular",
        };
        let oneof = match field.oneof_index {
            Some(index) if !field.proto3_optional() => usize::try_from(index)
                .ok()
                .and_then(|i| message.oneof_decl.get(i))
                .map(|o| format!(" oneof {}", o.name()))
                .unwrap_or_else(|| " oneof ?".to_owned()),
            _ => String::new(),
        };
        lines.push(format!(
            "field {full_name}.{} = {} {label} {type_text}{oneof}",
            field.name(),
            field.number()
        ));
    }
    for nested in &message.nested_type {
        message_lines(
            &format!("{full_name}.{}", nested.name()),
            nested,
            file_name,
            lines,
        );
    }
    for enumeration in &message.enum_type {
        enum_lines(
            &format!("{full_name}.{}", enumeration.name()),
            enumeration,
            file_name,
            lines,
        );
    }
}

fn enum_lines(
    full_name: &str,
    enumeration: &EnumDescriptorProto,
    file_name: &str,
    lines: &mut Vec<String>,
) {
    lines.push(format!("enum {full_name} in {file_name}"));
    for value in &enumeration.value {
        lines.push(format!(
            "value {full_name}.{} = {}",
            value.name(),
            value.number()
        ));
    }
}
