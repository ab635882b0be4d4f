//! Arguments built only when they are used.
//!
//! clap's derive builds every command's arguments at start and copies the global options into
//! each of the thirty commands: for a command run as often as `gapreg ids reserve`, that was
//! half of the process's own instructions and a third of its page faults. [`Lazy`] wraps a
//! command's arguments (or its subcommands) so that clap builds them, and the options every
//! command takes ([`crate::Global`], made global there), only when the command line enters
//! that command (`Command::defer`). Help sees every argument as before; completions and the
//! man page, which describe the whole tree, build it all at once ([`eager`]).

use std::sync::atomic::{AtomicBool, Ordering};

use clap::{ArgMatches, Args, Command, FromArgMatches, Subcommand};

use crate::Global;

static EAGER: AtomicBool = AtomicBool::new(false);

/// From now on, every command is built with its arguments at once: for the completions and
/// the man page (clap makes the `help` subcommand's tree before deferred commands are built,
/// so `gapreg help ids <TAB>` would complete nothing).
pub fn eager() {
    EAGER.store(true, Ordering::Relaxed);
}

/// `cmd` given `augment`'s arguments now ([`eager`]) or when clap builds it.
fn add(cmd: Command, augment: fn(Command) -> Command, deferred: fn(Command) -> Command) -> Command {
    if EAGER.load(Ordering::Relaxed) {
        with_globals(cmd, augment)
    } else {
        cmd.defer(deferred)
    }
}

/// `T`'s arguments or subcommands, and the options every command takes, added to its command
/// only when clap builds that command.
#[derive(Debug)]
pub struct Lazy<T>(pub T);

impl<T: FromArgMatches> FromArgMatches for Lazy<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(matches).map(Lazy)
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(matches).map(Lazy)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }

    fn update_from_arg_matches_mut(&mut self, matches: &mut ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(matches)
    }
}

impl<T: Args> Args for Lazy<T> {
    fn augment_args(cmd: Command) -> Command {
        add(cmd, T::augment_args, |cmd| {
            with_globals(cmd, T::augment_args)
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        add(cmd, T::augment_args_for_update, |cmd| {
            with_globals(cmd, T::augment_args_for_update)
        })
    }
}

impl<T: Subcommand> Subcommand for Lazy<T> {
    fn augment_subcommands(cmd: Command) -> Command {
        add(cmd, T::augment_subcommands, |cmd| {
            with_globals(cmd, T::augment_subcommands)
        })
    }

    fn augment_subcommands_for_update(cmd: Command) -> Command {
        add(cmd, T::augment_subcommands_for_update, |cmd| {
            with_globals(cmd, T::augment_subcommands_for_update)
        })
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

/// `cmd` with `augment`'s arguments, then the options every command takes, global from here
/// down. Its own description stays: the one its variant gave it, not its arguments' type's.
fn with_globals(cmd: Command, augment: fn(Command) -> Command) -> Command {
    let about = cmd.get_about().cloned();
    let long_about = cmd.get_long_about().cloned();
    let mut cmd = augment(cmd);
    let own = cmd.get_arguments().count();
    cmd = Global::augment_args(cmd);
    if let Some(about) = about {
        cmd = cmd.about(about);
    }
    if let Some(long_about) = long_about {
        cmd = cmd.long_about(long_about);
    }
    let ids: Vec<clap::Id> = cmd
        .get_arguments()
        .skip(own)
        .map(|a| a.get_id().clone())
        .collect();
    for id in ids {
        cmd = cmd.mut_arg(id, |a| a.global(true));
    }
    cmd
}
