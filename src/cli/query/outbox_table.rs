//! The `outbox` table: records waiting to be shipped upstream, one row each.

use super::format::duration;
use super::table::{render_table, Align};
use crate::control::protocol::OutboxEntry;

pub(super) fn render_outbox(entries: &[OutboxEntry]) -> String {
    if entries.is_empty() {
        return "the outbox is empty: every closed interval was delivered\n".into();
    }
    use Align::{Left, Right};
    let columns = [
        ("seq", Right),
        ("kind", Left),
        ("interval start", Left),
        ("length", Right),
        ("dimension", Left),
        ("key", Left),
        ("offered", Right),
        ("waiting for", Left),
    ];
    let cells: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                format!("{:?}", e.kind).to_lowercase(),
                jiff::Timestamp::from_millisecond(e.interval_start_ms)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                duration(e.interval_ms),
                e.dimension.name().to_string(),
                e.key.clone(),
                e.offered.to_string(),
                e.waiting_for.join(", "),
            ]
        })
        .collect();
    render_table(&columns, &cells)
}
