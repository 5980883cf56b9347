//! The checklist a status post shows while a run works, built by the bridge from the
//! run's real steps (`GET /agent/runs/{id}/conversation`), not written by the model:
//! which conversations to read on a tick (only runs that changed, at most once per run
//! per refresh period, within a per-tick budget shared round robin), and how a
//! conversation becomes a checklist.

use crate::domain::{Checklist, ChecklistStep};
use crate::ids::{OzRunId, RunRef};
use crate::oz::types::{ContentBlock, ConversationResponse, ConversationStep};
use crate::store::Millis;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// Steps a checklist lists at most; the rest are counted.
pub const MAX_STEPS: usize = 25;
/// Characters of one step's text at most.
const MAX_STEP_CHARS: usize = 120;
/// Action names counted on the checklist at most (the most frequent).
const MAX_ACTION_KINDS: usize = 4;

/// How often conversations are read.
#[derive(Debug, Clone, Copy)]
pub struct ChecklistSettings {
    /// A run's conversation is read again at most this often (`OZ_CONVERSATION_REFRESH_SECS`).
    pub refresh: Duration,
    /// Conversations read per tick at most, over all runs (`OZ_CONVERSATION_BUDGET`; 0: no
    /// checklists).
    pub budget: usize,
}

/// A working run whose conversation may be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingRun {
    pub run: RunRef,
    pub oz_run: OzRunId,
    /// When Oz created it: the conversation's steps from then on are its own.
    pub created_at: DateTime<Utc>,
    /// Its last update at Oz, as the list reported it.
    pub updated_at: DateTime<Utc>,
}

/// What the schedule knows of one working run.
struct Entry {
    run: WorkingRun,
    /// When it was noted working last (entries not noted for long are dropped).
    noted_at: Millis,
    /// When its conversation was last read, and the run's update it was read at.
    read: Option<(Millis, DateTime<Utc>)>,
}

/// When each working run's conversation was last read, and which runs changed since.
/// A run that changed waits until it is read, even when the budget defers it to a later
/// tick and the list does not mention it again. In memory: after a restart or on
/// another replica, each working run is read once more.
#[derive(Default)]
pub struct ReadSchedule {
    entries: Mutex<HashMap<RunRef, Entry>>,
}

/// An entry not noted working for this long is dropped (its run ended elsewhere).
const FORGET_AFTER_MS: Millis = 6 * 3_600_000;

impl ReadSchedule {
    /// Notes a run the list reported working (and updated at `run.updated_at`).
    pub fn note_working(&self, run: WorkingRun, now: Millis) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let read = entries.get(&run.run).and_then(|e| e.read);
        entries.insert(
            run.run.clone(),
            Entry {
                run,
                noted_at: now,
                read,
            },
        );
    }

    /// The runs whose conversation is read now: changed since it was last read, and
    /// not read within `refresh`; the longest unread first (round robin), at most
    /// `budget`. Each picked run counts as read now.
    pub fn pick(&self, now: Millis, settings: ChecklistSettings) -> Vec<WorkingRun> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| now - e.noted_at < FORGET_AFTER_MS);
        let refresh = crate::clock::ms(settings.refresh);
        let mut due: Vec<(Millis, &RunRef)> = entries
            .values()
            .filter_map(|e| match e.read {
                None => Some((0, &e.run.run)),
                Some((at, seen)) if e.run.updated_at > seen && now - at >= refresh => {
                    Some((at, &e.run.run))
                }
                Some(_) => None,
            })
            .collect();
        due.sort();
        let picked: Vec<RunRef> = due
            .into_iter()
            .take(settings.budget)
            .map(|(_, run)| run.clone())
            .collect();
        picked
            .iter()
            .filter_map(|run| {
                let entry = entries.get_mut(run)?;
                entry.read = Some((now, entry.run.updated_at));
                Some(entry.run.clone())
            })
            .collect()
    }

    /// Forgets a run that ended.
    pub fn forget(&self, run: &RunRef) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(run);
    }
}

/// The checklist of a run from its conversation: the steps that began at or after the
/// run's creation (a follow-up's conversation holds the earlier runs' steps too). A
/// run's top steps are its request (the prompt); the steps nested in them are the work,
/// and are what is listed, with their own nesting. The actions of every step count.
pub fn checklist_of(conversation: &ConversationResponse, since: DateTime<Utc>) -> Checklist {
    let own: Vec<&ConversationStep> = conversation
        .steps
        .iter()
        .filter(|step| step.started_at.is_none_or(|at| at >= since))
        .collect();
    let mut listed = Vec::new();
    let mut actions: BTreeMap<String, u32> = BTreeMap::new();
    for step in &own {
        count_actions(step, &mut actions);
        for child in &step.steps {
            list(child, 0, &mut listed);
        }
    }
    let more = listed.len().saturating_sub(MAX_STEPS);
    listed.truncate(MAX_STEPS);
    let mut counted: Vec<(String, u32)> = actions.into_iter().collect();
    counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counted.truncate(MAX_ACTION_KINDS);
    Checklist {
        steps: listed,
        more_steps: more,
        actions: counted,
    }
}

fn list(step: &ConversationStep, depth: u8, out: &mut Vec<ChecklistStep>) {
    let text = step
        .description
        .as_deref()
        .or(step.summary.as_deref())
        .map(|text| text.lines().next().unwrap_or_default().trim().to_owned())
        .filter(|text| !text.is_empty());
    if let Some(text) = text {
        out.push(ChecklistStep {
            depth,
            text: crate::text::truncate(&text, MAX_STEP_CHARS),
            done: step.summary.is_some() || step.completed_at.is_some(),
        });
    }
    for child in &step.steps {
        list(child, depth.saturating_add(1).min(3), out);
    }
}

fn count_actions(step: &ConversationStep, actions: &mut BTreeMap<String, u32>) {
    for message in &step.messages {
        for block in &message.content {
            if let ContentBlock::Other(raw) = block
                && raw.get("type").and_then(|t| t.as_str()) == Some("action")
                && let Some(name) = raw.get("name").and_then(|n| n.as_str())
            {
                *actions.entry(name.to_owned()).or_default() += 1;
            }
        }
    }
    for child in &step.steps {
        count_actions(child, actions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oz::types::{ConversationMessage, MessageRole};

    fn step(description: &str, done: bool, children: Vec<ConversationStep>) -> ConversationStep {
        ConversationStep {
            id: description.into(),
            description: Some(description.into()),
            summary: done.then(|| "done".to_owned()),
            started_at: None,
            completed_at: None,
            messages: Vec::new(),
            steps: children,
        }
    }

    fn assistant(content: Vec<ContentBlock>) -> ConversationMessage {
        ConversationMessage {
            message_ids: None,
            request_id: None,
            role: MessageRole::Assistant,
            timestamp: None,
            content,
        }
    }

    fn action(name: &str) -> ContentBlock {
        ContentBlock::Other(serde_json::json!({
            "type": "action", "id": "a", "category": "command", "name": name, "input": {}
        }))
    }

    #[test]
    fn nested_steps_are_listed_under_the_request_with_their_actions_counted() {
        let mut root = step(
            "the whole prompt",
            false,
            vec![
                step("Read the failing test", true, vec![]),
                step(
                    "Fix the race",
                    false,
                    vec![
                        step("Add a lock", true, vec![]),
                        step("Run the suite", false, vec![]),
                    ],
                ),
            ],
        );
        root.messages.push(assistant(vec![
            action("run_command"),
            action("run_command"),
            action("edit_files"),
        ]));
        root.steps[1].messages.push(assistant(vec![
            action("run_command"),
            ContentBlock::Text { text: "x".into() },
        ]));
        let conversation = ConversationResponse {
            conversation_id: crate::ids::ConversationId("c".into()),
            steps: vec![root],
        };
        let checklist = checklist_of(&conversation, DateTime::<Utc>::MIN_UTC);
        let lines: Vec<(u8, &str, bool)> = checklist
            .steps
            .iter()
            .map(|s| (s.depth, s.text.as_str(), s.done))
            .collect();
        assert_eq!(
            lines,
            [
                (0, "Read the failing test", true),
                (0, "Fix the race", false),
                (1, "Add a lock", true),
                (1, "Run the suite", false),
            ]
        );
        assert_eq!(
            checklist.actions,
            [("run_command".to_owned(), 3), ("edit_files".to_owned(), 1)]
        );
    }

    #[test]
    fn a_follow_up_lists_only_its_own_steps_and_long_lists_are_cut() {
        let since = DateTime::<Utc>::from_timestamp(1_000, 0).unwrap();
        let mut earlier = step("earlier run", true, vec![step("old work", true, vec![])]);
        earlier.started_at = DateTime::<Utc>::from_timestamp(10, 0);
        let mut now = step(
            "this run",
            false,
            (0..40)
                .map(|i| step(&format!("step {i}"), false, vec![]))
                .collect(),
        );
        now.started_at = DateTime::<Utc>::from_timestamp(2_000, 0);
        let conversation = ConversationResponse {
            conversation_id: crate::ids::ConversationId("c".into()),
            steps: vec![earlier, now],
        };
        let checklist = checklist_of(&conversation, since);
        assert_eq!(checklist.steps.len(), MAX_STEPS);
        assert_eq!(checklist.steps[0].text, "step 0");
        assert_eq!(checklist.more_steps, 15);
    }

    #[test]
    fn the_budget_is_shared_round_robin_among_changed_runs() {
        let schedule = ReadSchedule::default();
        let settings = ChecklistSettings {
            refresh: Duration::from_secs(15),
            budget: 2,
        };
        let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        let working = |i: usize, updated: i64| WorkingRun {
            run: RunRef(format!("r{i}")),
            oz_run: OzRunId(format!("oz{i}")),
            created_at: at(0),
            updated_at: at(updated),
        };
        // Five runs changed once; the list does not mention them again.
        for i in 0..5 {
            schedule.note_working(working(i, 1), 0);
        }
        let mut read = Vec::new();
        for tick in 0..3 {
            let picked = schedule.pick(tick * 1_000, settings);
            assert!(picked.len() <= 2);
            read.extend(picked.into_iter().map(|w| w.run));
        }
        read.sort();
        read.dedup();
        assert_eq!(read.len(), 5, "every run read within three ticks: {read:?}");
        // Unchanged runs are not read again; changed ones wait for the refresh period.
        assert!(schedule.pick(60_000, settings).is_empty());
        for i in 0..5 {
            schedule.note_working(working(i, 2), 61_000);
        }
        assert_eq!(schedule.pick(61_000, settings).len(), 2);
        schedule.forget(&RunRef("r0".into()));
        assert!(schedule.pick(61_000, settings).len() <= 2);
    }
}
