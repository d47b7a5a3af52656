/*
 * journal_int.h - what journal.c shares with journal_at.c (the state at
 * a past moment): the store's checkpoints as the history window sees
 * them, its journal entries, a checkpoint restored by its sequence.
 */
#ifndef METAFUSE_JOURNAL_INT_H
#define METAFUSE_JOURNAL_INT_H

#include "volume/journal.h"

/* a checkpoint in the store, as the history window sees it */
struct journal_ckpt {
	uint64_t cseq, jseq; /* jseq 0: unknown (no marker) */
	int64_t ns;          /* its state's time; 0: unknown, old as can be */
};

/* The store's checkpoints, ascending, with their markers' jseq and time
 * (two listings); *v is the caller's to free. */
int journal_ckpts_list(struct store *s, struct journal_ckpt **v, size_t *n);
/* The store's journal entries, ascending: sequences and listed sizes
 * (the caller frees both). */
int journal_entries_list(struct store *s, uint64_t **seq, uint64_t **size,
			 size_t *n);
/* Checkpoint cseq into a new database at db_path (its WAL and side files
 * removed). */
int journal_ckpt_restore(struct store *s, const struct blob_ctx *bc,
			 uint64_t cseq, const char *db_path);
/* The keys of entry and checkpoint seq. */
void journal_entry_key(uint64_t seq, char *key, size_t size);
void journal_ckpt_key(uint64_t seq, char *key, size_t size);

#endif
