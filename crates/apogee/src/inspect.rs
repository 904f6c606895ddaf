//! `apogee store inspect`: prints what `apogee_store::inspect` finds, as tables or as JSON.
//!
//! Exit codes: 0 done (and for `verify`: no damage), 1 `verify` found damage, 2 bad arguments,
//! 3 the store could not be read.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use apogee_store::inspect::{
    CheckpointReport, Inspector, LogItem, QueueInfo, RecordSummary, SegmentInfo, SegmentState,
    VerifyReport,
};
use serde_json::{json, Value};

use crate::{InspectArgs, InspectWhat};

const EXIT_DAMAGED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_UNREADABLE: u8 = 3;

pub(crate) fn run(args: &InspectArgs) -> ExitCode {
    let insp = match Inspector::open(&args.dir) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("apogee store inspect: {e}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let res = match &args.what {
        InspectWhat::Segments => segments(&insp, args.json, &mut out),
        InspectWhat::Records { from, limit } => records(&insp, *from, *limit, args.json, &mut out),
        InspectWhat::Queues => queues(&insp, args.json, &mut out),
        InspectWhat::Queue {
            topic,
            queue_id,
            from,
            limit,
        } => queue(&insp, topic, *queue_id, *from, *limit, args.json, &mut out),
        InspectWhat::Verify { max_problems } => verify(&insp, *max_problems, args.json, &mut out),
        InspectWhat::Checkpoint => checkpoint(&insp, args.json, &mut out),
    };
    let res = res.and_then(|code| out.flush().map(|_| code).map_err(Failure::Io));
    match res {
        Ok(code) => code,
        // The reader went away (`| head`): not an error of ours.
        Err(Failure::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Io(e)) => {
            eprintln!("apogee store inspect: writing output: {e}");
            ExitCode::from(EXIT_UNREADABLE)
        }
        Err(Failure::Store(e)) => {
            eprintln!("apogee store inspect: {e}");
            ExitCode::from(EXIT_UNREADABLE)
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("apogee store inspect: {msg}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

enum Failure {
    Io(io::Error),
    Store(apogee_store::StoreError),
    Usage(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

impl From<apogee_store::StoreError> for Failure {
    fn from(e: apogee_store::StoreError) -> Self {
        Failure::Store(e)
    }
}

type Out<'a> = dyn Write + 'a;
type Res = Result<ExitCode, Failure>;

fn print_json(out: &mut Out<'_>, v: &Value) -> Result<(), Failure> {
    serde_json::to_writer_pretty(&mut *out, v).map_err(|e| Failure::Io(e.into()))?;
    writeln!(out)?;
    Ok(())
}

/// Columns padded to their widest cell; numbers right-aligned, text left-aligned.
struct Table {
    head: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(cols: &[(&'static str, bool)]) -> Table {
        Table {
            head: cols.iter().map(|c| c.0).collect(),
            right: cols.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn print(&self, out: &mut Out<'_>) -> io::Result<()> {
        let mut w: Vec<usize> = self.head.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| -> String {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                let pad = w[i].saturating_sub(c.chars().count());
                if self.right[i] {
                    s.extend(std::iter::repeat_n(' ', pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    if i + 1 < cells.len() {
                        s.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            s
        };
        writeln!(out, "{}", line(self.head.clone()))?;
        for r in &self.rows {
            writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
        }
        Ok(())
    }
}

/// A millisecond timestamp as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn fmt_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (proleptic calendar, 400-year eras).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn opt_time(ms: Option<i64>) -> String {
    ms.map(fmt_ms).unwrap_or_else(|| "-".into())
}

fn state_text(s: &SegmentState) -> (String, Option<String>) {
    match s {
        SegmentState::Full => ("full".into(), None),
        SegmentState::Open => ("open".into(), None),
        SegmentState::Damaged(r) => ("damaged".into(), Some(r.clone())),
    }
}

fn segments(insp: &Inspector, as_json: bool, out: &mut Out<'_>) -> Res {
    let segs = insp.segments();
    if as_json {
        let list: Vec<Value> = segs.iter().map(segment_json).collect();
        print_json(
            out,
            &json!({ "segment_bytes": insp.segment_bytes(), "segments": list }),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        ("name", false),
        ("start", true),
        ("size", true),
        ("records", true),
        ("first store time", false),
        ("last store time", false),
        ("write position", true),
        ("state", false),
    ]);
    for s in &segs {
        let (state, why) = state_text(&s.state);
        t.row(vec![
            s.name.clone(),
            s.start.to_string(),
            s.file_bytes.to_string(),
            s.records.to_string(),
            opt_time(s.first_store_timestamp_ms),
            opt_time(s.last_store_timestamp_ms),
            s.write_position.to_string(),
            match why {
                Some(w) => format!("{state}: {w}"),
                None => state,
            },
        ]);
    }
    writeln!(
        out,
        "{} segment(s) of {} bytes in {}",
        segs.len(),
        insp.segment_bytes(),
        insp.root().join("commitlog").display()
    )?;
    if !segs.is_empty() {
        t.print(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn segment_json(s: &SegmentInfo) -> Value {
    let (state, why) = state_text(&s.state);
    json!({
        "name": s.name,
        "start": s.start,
        "file_bytes": s.file_bytes,
        "records": s.records,
        "first_store_timestamp_ms": s.first_store_timestamp_ms,
        "last_store_timestamp_ms": s.last_store_timestamp_ms,
        "write_position": s.write_position,
        "state": state,
        "damage": why,
    })
}

fn record_json(r: &RecordSummary) -> Value {
    json!({
        "offset": r.offset,
        "size": r.size,
        "topic": r.topic,
        "queue_id": r.queue_id,
        "queue_offset": r.queue_offset,
        "physical_offset": r.physical_offset,
        "sys_flag": r.sys_flag,
        "born_timestamp_ms": r.born_timestamp_ms,
        "store_timestamp_ms": r.store_timestamp_ms,
        "tags": r.tags,
        "keys": r.keys,
        "uniq_key": r.uniq_key,
        "body_len": r.body_len,
        "crc_ok": r.crc_ok,
    })
}

fn item_json(item: &LogItem) -> Value {
    match item {
        LogItem::Record(r) => {
            let mut v = record_json(r);
            v["kind"] = json!("record");
            v
        }
        LogItem::Blank { offset, len } => json!({"kind": "blank", "offset": offset, "len": len}),
        LogItem::End {
            offset,
            last_segment,
        } => json!({"kind": "end", "offset": offset, "last_segment": last_segment}),
        LogItem::Damaged { offset, reason } => {
            json!({"kind": "damaged", "offset": offset, "reason": reason})
        }
        LogItem::Missing { from, to } => json!({"kind": "missing", "from": from, "to": to}),
    }
}

const RECORD_HEAD: &str =
    "      offset    size  queue  queue offset  sysflag  store time                \
     body  crc  topic / tags / keys / uniq key";

fn record_line(r: &RecordSummary) -> String {
    let mut s = format!(
        "{:>12}  {:>6}  {:>5}  {:>12}  {:>7}  {:<24}  {:>6}  {:<3}  {}",
        r.offset,
        r.size,
        r.queue_id,
        r.queue_offset,
        r.sys_flag,
        fmt_ms(r.store_timestamp_ms),
        r.body_len,
        if r.crc_ok { "ok" } else { "BAD" },
        r.topic,
    );
    s.push_str(&format!(
        "  tags={}  keys={}  uniq={}",
        r.tags.as_deref().unwrap_or("-"),
        r.keys.as_deref().unwrap_or("-"),
        r.uniq_key.as_deref().unwrap_or("-"),
    ));
    if r.physical_offset != r.offset as i64 {
        s.push_str(&format!("  PHYSICALOFFSET={}!", r.physical_offset));
    }
    s
}

fn item_line(item: &LogItem) -> String {
    match item {
        LogItem::Record(r) => record_line(r),
        LogItem::Blank { offset, len } => {
            format!("{offset:>12}  -- blank filler of {len} bytes: the segment is full")
        }
        LogItem::End {
            offset,
            last_segment: true,
        } => format!("{offset:>12}  -- end of the log"),
        LogItem::End { offset, .. } => {
            format!("{offset:>12}  -- zeros without a blank filler (damage); next segment")
        }
        LogItem::Damaged { offset, reason } => {
            format!("{offset:>12}  -- DAMAGED: {reason}; next segment")
        }
        LogItem::Missing { from, to } => {
            format!("{from:>12}  -- segments missing up to {to}")
        }
    }
}

fn records(
    insp: &Inspector,
    from: Option<u64>,
    limit: usize,
    as_json: bool,
    out: &mut Out<'_>,
) -> Res {
    let (min, max) = insp.log_bounds();
    if let Some(f) = from {
        if f < min || f >= max {
            return Err(Failure::Usage(format!(
                "--from {f} is outside the log's segments ({min}..{max})"
            )));
        }
    }
    let mut count = 0usize;
    let mut first = true;
    let mut next: Option<u64> = None;
    let mut err: Option<io::Error> = None;
    if as_json {
        if let Err(e) = write!(out, "{{\"records\": [") {
            return Err(e.into());
        }
    } else {
        writeln!(out, "{RECORD_HEAD}")?;
    }
    insp.walk(from, &mut |item| {
        if let LogItem::Record(r) = &item {
            if count >= limit {
                next = Some(r.offset);
                return false;
            }
            count += 1;
        }
        let res = if as_json {
            let sep = if first { "\n  " } else { ",\n  " };
            first = false;
            write!(out, "{sep}{}", item_json(&item))
        } else {
            writeln!(out, "{}", item_line(&item))
        };
        match res {
            Ok(()) => true,
            Err(e) => {
                err = Some(e);
                false
            }
        }
    });
    if let Some(e) = err {
        return Err(e.into());
    }
    if as_json {
        writeln!(
            out,
            "\n], \"count\": {count}, \"next_offset\": {}}}",
            next.map(|n| n.to_string()).unwrap_or_else(|| "null".into())
        )?;
    } else if let Some(n) = next {
        writeln!(out, "({count} records; more from --from {n})")?;
    } else {
        writeln!(out, "({count} records)")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn queue_json(q: &QueueInfo) -> Value {
    json!({
        "topic": q.topic,
        "queue_id": q.queue_id,
        "min_offset": q.min_offset,
        "max_offset": q.max_offset,
        "files": q.files,
        "entries_per_file": q.entries_per_file,
    })
}

fn queues(insp: &Inspector, as_json: bool, out: &mut Out<'_>) -> Res {
    let qs = insp.queues()?;
    if as_json {
        let list: Vec<Value> = qs.iter().map(queue_json).collect();
        print_json(out, &json!({ "queues": list }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        ("topic", false),
        ("queue", true),
        ("min offset", true),
        ("max offset", true),
        ("files", true),
    ]);
    for q in &qs {
        t.row(vec![
            q.topic.clone(),
            q.queue_id.to_string(),
            q.min_offset.to_string(),
            q.max_offset.to_string(),
            q.files.to_string(),
        ]);
    }
    writeln!(out, "{} consume queue(s)", qs.len())?;
    if !qs.is_empty() {
        t.print(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn queue(
    insp: &Inspector,
    topic: &str,
    queue_id: i32,
    from: Option<u64>,
    limit: usize,
    as_json: bool,
    out: &mut Out<'_>,
) -> Res {
    let d = insp.queue(topic, queue_id, from, limit)?;
    if d.info.files == 0 {
        return Err(Failure::Usage(format!(
            "no consume queue {topic}/{queue_id} in {}",
            insp.root().display()
        )));
    }
    if as_json {
        let mut v = queue_json(&d.info);
        v["entries"] = d
            .entries
            .iter()
            .map(|(o, e)| {
                json!({
                    "offset": o,
                    "commitlog_offset": e.commitlog_offset,
                    "size": e.size,
                    "tags_code": e.tags_code,
                })
            })
            .collect();
        print_json(out, &v)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "consume queue {topic}/{queue_id}: min offset {}, max offset {}, {} file(s) of {} entries",
        d.info.min_offset, d.info.max_offset, d.info.files, d.info.entries_per_file
    )?;
    let mut t = Table::new(&[
        ("offset", true),
        ("commitlog offset", true),
        ("size", true),
        ("tags code", true),
    ]);
    for (o, e) in &d.entries {
        t.row(vec![
            o.to_string(),
            e.commitlog_offset.to_string(),
            if e.size == i32::MAX as u32 {
                "blank".into()
            } else {
                e.size.to_string()
            },
            e.tags_code.to_string(),
        ]);
    }
    t.print(out)?;
    Ok(ExitCode::SUCCESS)
}

fn verify_json(r: &VerifyReport) -> Value {
    json!({
        "ok": !r.is_damaged(),
        "segments": r.segments,
        "log_min_offset": r.log_min_offset,
        "log_end_offset": r.log_end_offset,
        "records": r.records,
        "record_bytes": r.record_bytes,
        "blanks": r.blanks,
        "crc_errors": r.crc_errors,
        "queues": r.queues,
        "queue_entries": r.queue_entries,
        "undispatched_records": r.undispatched_records,
        "abort_present": r.abort_present,
        "problem_count": r.problem_count,
        "problems": r.problems.iter().map(|p| json!({
            "file": p.file,
            "offset": p.offset,
            "what": p.what,
        })).collect::<Vec<_>>(),
        "notes": r.notes,
    })
}

fn verify(insp: &Inspector, max_problems: usize, as_json: bool, out: &mut Out<'_>) -> Res {
    let r = insp.verify(max_problems)?;
    if as_json {
        print_json(out, &verify_json(&r))?;
    } else {
        writeln!(out, "store {}", insp.root().display())?;
        writeln!(
            out,
            "commitlog: {} segment(s), records from {} to {}",
            r.segments, r.log_min_offset, r.log_end_offset
        )?;
        writeln!(
            out,
            "records: {} ({} bytes), blank fillers: {}, CRC errors: {}",
            r.records, r.record_bytes, r.blanks, r.crc_errors
        )?;
        writeln!(
            out,
            "consume queues: {} with {} entries; records not yet dispatched: {}",
            r.queues, r.queue_entries, r.undispatched_records
        )?;
        writeln!(
            out,
            "abort file: {}",
            if r.abort_present {
                "present (running or crashed)"
            } else {
                "absent (clean stop)"
            }
        )?;
        writeln!(
            out,
            "problems: {}{}",
            r.problem_count,
            if (r.problems.len() as u64) < r.problem_count {
                format!(" (first {} shown)", r.problems.len())
            } else {
                String::new()
            }
        )?;
        for p in &r.problems {
            match p.offset {
                Some(o) => writeln!(out, "  {} @ {o}: {}", p.file, p.what)?,
                None => writeln!(out, "  {}: {}", p.file, p.what)?,
            }
        }
        for n in &r.notes {
            writeln!(out, "note: {n}")?;
        }
        writeln!(
            out,
            "result: {}",
            if r.is_damaged() { "DAMAGED" } else { "OK" }
        )?;
    }
    Ok(if r.is_damaged() {
        ExitCode::from(EXIT_DAMAGED)
    } else {
        ExitCode::SUCCESS
    })
}

fn checkpoint(insp: &Inspector, as_json: bool, out: &mut Out<'_>) -> Res {
    let c: CheckpointReport = insp.checkpoint()?;
    if as_json {
        let slots: Vec<Value> = c
            .slots
            .iter()
            .map(|s| match &s.state {
                Ok((seq, d)) => json!({
                    "slot": s.index,
                    "valid": true,
                    "seq": seq,
                    "commitlog_flushed_offset": d.commitlog_flushed_offset,
                    "dispatch_flushed_offset": d.dispatch_flushed_offset,
                    "physic_msg_timestamp_ms": d.physic_msg_timestamp_ms,
                    "index_msg_timestamp_ms": d.index_msg_timestamp_ms,
                    "index_file_offset": d.index_file_offset,
                    "index_count": d.index_count,
                }),
                Err(why) => json!({"slot": s.index, "valid": false, "reason": why}),
            })
            .collect();
        print_json(
            out,
            &json!({"file_bytes": c.file_bytes, "newest": c.newest, "slots": slots}),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    match c.file_bytes {
        None => writeln!(out, "checkpoint: file missing")?,
        Some(n) => writeln!(out, "checkpoint: {n} bytes")?,
    }
    for s in &c.slots {
        let newest = if c.newest == Some(s.index) {
            " (newest: the store uses this one)"
        } else {
            ""
        };
        match &s.state {
            Ok((seq, d)) => {
                writeln!(out, "slot {}: valid, seq {seq}{newest}", s.index)?;
                writeln!(
                    out,
                    "  commitlog flushed offset  {}",
                    d.commitlog_flushed_offset
                )?;
                writeln!(
                    out,
                    "  dispatch flushed offset   {}",
                    d.dispatch_flushed_offset
                )?;
                writeln!(
                    out,
                    "  physic msg timestamp      {} ({})",
                    d.physic_msg_timestamp_ms,
                    fmt_ms(d.physic_msg_timestamp_ms as i64)
                )?;
                writeln!(
                    out,
                    "  index msg timestamp       {} ({})",
                    d.index_msg_timestamp_ms,
                    fmt_ms(d.index_msg_timestamp_ms as i64)
                )?;
                writeln!(out, "  index file offset         {}", d.index_file_offset)?;
                writeln!(out, "  index count               {}", d.index_count)?;
            }
            Err(why) => writeln!(out, "slot {}: invalid: {why}", s.index)?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_utc_dates() {
        assert_eq!(fmt_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(fmt_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(fmt_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
