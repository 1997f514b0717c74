//! The archive's Parquet files: one row per message, one column per field, zstd-compressed,
//! row groups of at most [`ROW_GROUP_ROWS`] rows with min/max statistics (a query for a time
//! range skips the row groups outside it). Written and read with the `parquet` crate's own
//! column and record APIs (no arrow); any Parquet reader (pyarrow, duckdb) reads them.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use edge_gateway_actors::record::Record;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::record::{Field, Row};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

/// The schema of every archive file (the column order is the writer's order below).
pub const SCHEMA: &str = "message archive {
  REQUIRED INT64 seq;
  REQUIRED BYTE_ARRAY key (STRING);
  REQUIRED BYTE_ARRAY device (STRING);
  REQUIRED BYTE_ARRAY topic (STRING);
  REQUIRED INT32 qos (INTEGER(8,false));
  REQUIRED INT64 received_at (TIMESTAMP(MILLIS,true));
  OPTIONAL INT64 device_time (TIMESTAMP(MILLIS,true));
  REQUIRED BYTE_ARRAY payload;
  OPTIONAL BYTE_ARRAY content_type (STRING);
  OPTIONAL BYTE_ARRAY user_properties (STRING);
  OPTIONAL BYTE_ARRAY trace_id (STRING);
  OPTIONAL BYTE_ARRAY schema_subject (STRING);
  OPTIONAL INT32 schema_version;
  OPTIONAL BOOLEAN schema_valid;
}";

/// The column the time-range pushdown reads statistics of (`received_at`).
const RECEIVED_AT: usize = 5;

/// Rows per row group.
pub const ROW_GROUP_ROWS: usize = 16_384;

/// One archived message, as a row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArchivedRow {
    /// The store's sequence number (unique within one gateway's store).
    pub seq: u64,
    /// The idempotency key.
    pub key: String,
    /// The publishing identity.
    pub device: String,
    /// The topic.
    pub topic: String,
    /// 0, 1 or 2.
    pub qos: u8,
    /// Gateway receive time, ms since the Unix epoch.
    pub received_at_ms: i64,
    /// The device's own timestamp (user property `ts` or a JSON `ts`), if it sent one.
    pub device_time_ms: Option<i64>,
    /// The payload bytes (shared, not copied, into the Parquet writer).
    #[serde(serialize_with = "payload_text")]
    pub payload: bytes::Bytes,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
    /// MQTT 5 user properties as a JSON array of `[key, value]` pairs.
    pub user_properties: Option<String>,
    /// The W3C trace id (hex) of the message's receive span.
    pub trace_id: Option<String>,
    /// The schema subject its payload was checked against.
    pub schema_subject: Option<String>,
    /// ... and its version.
    pub schema_version: Option<i32>,
    /// ... and whether it validated.
    pub schema_valid: Option<bool>,
}

/// JSON output: UTF-8 payloads as text, anything else as `base64:...`.
fn payload_text<S: serde::Serializer>(payload: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine as _;
    match std::str::from_utf8(payload) {
        Ok(text) => s.serialize_str(text),
        Err(_) => s.serialize_str(&format!("base64:{}", base64::engine::general_purpose::STANDARD.encode(payload))),
    }
}

impl ArchivedRow {
    /// The row of a stored record (taken apart: nothing is copied).
    pub fn from_record(r: Record) -> Self {
        let device_time_ms = edge_gateway_actors::forwarder::device_timestamp_ms(&r).map(|t| t as i64);
        Self {
            seq: r.seq,
            key: r.key,
            device: r.device,
            topic: r.topic,
            qos: r.qos,
            received_at_ms: r.received_at_ms as i64,
            device_time_ms,
            payload: r.payload.into(),
            content_type: r.content_type,
            user_properties: (!r.user_properties.is_empty()).then(|| serde_json::to_string(&r.user_properties).unwrap_or_default()),
            // The same hex as the trace ids in the log lines.
            trace_id: r.trace.as_ref().map(|t| edge_gateway_actors::spans::log_ids(Some(t)).0),
            schema_valid: r.schema.as_ref().map(|s| s.valid),
            schema_version: r.schema.as_ref().map(|s| s.version as i32),
            schema_subject: r.schema.map(|s| s.subject),
        }
    }

    /// About the bytes this row takes before compression (what `max_file_bytes` counts).
    pub fn size(&self) -> u64 {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        (48 + self.key.len()
            + self.device.len()
            + self.topic.len()
            + self.payload.len()
            + opt(&self.content_type)
            + opt(&self.user_properties)
            + opt(&self.trace_id)
            + opt(&self.schema_subject)) as u64
    }
}

/// Write `rows` as one Parquet file into `file` (not fsync'ed here). The rows are taken apart
/// into the columns: their strings and payloads move into the writer, nothing is copied.
pub fn write(file: &File, mut rows: Vec<ArchivedRow>) -> Result<(), ParquetError> {
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    // Keys and payloads are (nearly) all different: no dictionary to build and give up on.
    // Statistics only where a query uses them (received_at, per row group), and zstd's
    // fastest level: the archive shares the CPU with ingest (bench/archive.sh).
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_column_dictionary_enabled(ColumnPath::from("key"), false)
        .set_column_dictionary_enabled(ColumnPath::from("payload"), false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("received_at"), EnabledStatistics::Chunk)
        .set_created_by(format!("edge-gateway {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut writer = SerializedFileWriter::new(file, schema, Arc::new(props))?;
    for chunk in rows.chunks_mut(ROW_GROUP_ROWS) {
        let mut group = writer.next_row_group()?;
        let mut column = 0;
        while let Some(mut col) = group.next_column()? {
            write_column(column, &mut col, chunk)?;
            col.close()?;
            column += 1;
        }
        group.close()?;
    }
    writer.close()?;
    Ok(())
}

fn write_column(column: usize, col: &mut SerializedColumnWriter<'_>, rows: &mut [ArchivedRow]) -> Result<(), ParquetError> {
    let bytes = |s: String| ByteArray::from(s.into_bytes());
    let text = |rows: &mut [ArchivedRow], f: fn(&mut ArchivedRow) -> &mut String| {
        rows.iter_mut().map(|r| bytes(std::mem::take(f(r)))).collect::<Vec<_>>()
    };
    let opt_text = |rows: &mut [ArchivedRow], f: fn(&mut ArchivedRow) -> &mut Option<String>| optional(rows, |r| f(r).take().map(bytes));
    match column {
        0 => col.typed::<Int64Type>().write_batch(&rows.iter().map(|r| r.seq as i64).collect::<Vec<_>>(), None, None)?,
        1 => col.typed::<ByteArrayType>().write_batch(&text(rows, |r| &mut r.key), None, None)?,
        2 => col.typed::<ByteArrayType>().write_batch(&text(rows, |r| &mut r.device), None, None)?,
        3 => col.typed::<ByteArrayType>().write_batch(&text(rows, |r| &mut r.topic), None, None)?,
        4 => col.typed::<Int32Type>().write_batch(&rows.iter().map(|r| i32::from(r.qos)).collect::<Vec<_>>(), None, None)?,
        5 => col.typed::<Int64Type>().write_batch(&rows.iter().map(|r| r.received_at_ms).collect::<Vec<_>>(), None, None)?,
        6 => {
            let (values, defs) = optional(rows, |r| r.device_time_ms);
            col.typed::<Int64Type>().write_batch(&values, Some(&defs), None)?
        }
        7 => col.typed::<ByteArrayType>().write_batch(
            &rows.iter_mut().map(|r| ByteArray::from(std::mem::take(&mut r.payload))).collect::<Vec<_>>(),
            None,
            None,
        )?,
        8..=11 => {
            let (values, defs) = match column {
                8 => opt_text(rows, |r| &mut r.content_type),
                9 => opt_text(rows, |r| &mut r.user_properties),
                10 => opt_text(rows, |r| &mut r.trace_id),
                _ => opt_text(rows, |r| &mut r.schema_subject),
            };
            col.typed::<ByteArrayType>().write_batch(&values, Some(&defs), None)?
        }
        12 => {
            let (values, defs) = optional(rows, |r| r.schema_version);
            col.typed::<Int32Type>().write_batch(&values, Some(&defs), None)?
        }
        13 => {
            let (values, defs) = optional(rows, |r| r.schema_valid);
            col.typed::<BoolType>().write_batch(&values, Some(&defs), None)?
        }
        _ => return Err(ParquetError::General(format!("column {column} is not in the archive schema"))),
    };
    Ok(())
}

/// The present values of an optional column and the definition level of every row.
fn optional<T>(rows: &mut [ArchivedRow], mut f: impl FnMut(&mut ArchivedRow) -> Option<T>) -> (Vec<T>, Vec<i16>) {
    let mut values = Vec::new();
    let defs = rows
        .iter_mut()
        .map(|r| match f(r) {
            Some(v) => {
                values.push(v);
                1
            }
            None => 0,
        })
        .collect();
    (values, defs)
}

/// Which rows a read returns.
#[derive(Debug, Clone, Default)]
pub struct RowFilter {
    /// Received at or after (ms).
    pub from_ms: Option<i64>,
    /// Received before (ms).
    pub to_ms: Option<i64>,
    /// Only this identity.
    pub device: Option<String>,
    /// Only topics this MQTT filter matches.
    pub topic: Option<crate::routing::table::Subscription>,
}

impl RowFilter {
    fn overlaps(&self, min_ms: i64, max_ms: i64) -> bool {
        self.from_ms.is_none_or(|f| max_ms >= f) && self.to_ms.is_none_or(|t| min_ms < t)
    }

    fn keeps(&self, r: &ArchivedRow) -> bool {
        self.overlaps(r.received_at_ms, r.received_at_ms)
            && self.device.as_ref().is_none_or(|d| *d == r.device)
            && self.topic.as_ref().is_none_or(|t| t.matches(&r.topic))
    }
}

/// What a read did: rows returned, row groups read and skipped by their statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    /// Row groups read.
    pub groups_read: usize,
    /// Row groups skipped (their `received_at` range is outside the filter's).
    pub groups_skipped: usize,
}

/// The rows of the file at `path` that `filter` keeps, in file order.
pub fn read(path: &Path, filter: &RowFilter, out: &mut Vec<ArchivedRow>) -> Result<ReadStats, ParquetError> {
    let reader = SerializedFileReader::new(File::open(path)?)?;
    let mut stats = ReadStats::default();
    for i in 0..reader.metadata().num_row_groups() {
        let group = reader.metadata().row_group(i);
        if let Some(Statistics::Int64(s)) = group.column(RECEIVED_AT).statistics()
            && let (Some(&min), Some(&max)) = (s.min_opt(), s.max_opt())
            && !filter.overlaps(min, max)
        {
            stats.groups_skipped += 1;
            continue;
        }
        stats.groups_read += 1;
        for row in reader.get_row_group(i)?.get_row_iter(None)? {
            let row = from_row(&row?)?;
            if filter.keeps(&row) {
                out.push(row);
            }
        }
    }
    Ok(stats)
}

fn from_row(row: &Row) -> Result<ArchivedRow, ParquetError> {
    let fields: Vec<&Field> = row.get_column_iter().map(|(_, f)| f).collect();
    let bad = |i: usize| ParquetError::General(format!("column {i}: unexpected value {:?}", fields.get(i)));
    let int = |i: usize| match fields.get(i) {
        Some(Field::Long(v) | Field::TimestampMillis(v)) => Ok(Some(*v)),
        Some(Field::Int(v)) => Ok(Some(i64::from(*v))),
        Some(Field::UByte(v)) => Ok(Some(i64::from(*v))),
        Some(Field::Null) => Ok(None),
        _ => Err(bad(i)),
    };
    let text = |i: usize| match fields.get(i) {
        Some(Field::Str(s)) => Ok(Some(s.clone())),
        Some(Field::Null) => Ok(None),
        _ => Err(bad(i)),
    };
    let required = |v: Option<i64>, i: usize| v.ok_or_else(|| bad(i));
    let required_text = |v: Option<String>, i: usize| v.ok_or_else(|| bad(i));
    Ok(ArchivedRow {
        seq: required(int(0)?, 0)? as u64,
        key: required_text(text(1)?, 1)?,
        device: required_text(text(2)?, 2)?,
        topic: required_text(text(3)?, 3)?,
        qos: required(int(4)?, 4)? as u8,
        received_at_ms: required(int(5)?, 5)?,
        device_time_ms: int(6)?,
        payload: match fields.get(7) {
            Some(Field::Bytes(b)) => bytes::Bytes::copy_from_slice(b.data()),
            _ => return Err(bad(7)),
        },
        content_type: text(8)?,
        user_properties: text(9)?,
        trace_id: text(10)?,
        schema_subject: text(11)?,
        schema_version: int(12)?.map(|v| v as i32),
        schema_valid: match fields.get(13) {
            Some(Field::Bool(b)) => Some(*b),
            Some(Field::Null) => None,
            _ => return Err(bad(13)),
        },
    })
}
