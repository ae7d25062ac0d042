-- Issue 9, `register --replace`: an agent name is unique among live (non-revoked) agents
-- only, so a revoked agent's name can be taken again. The old uniqueness was a named
-- index (0000_init), not a column constraint: dropping it needs no table rebuild.
DROP INDEX `agents_name_unique`;--> statement-breakpoint
ALTER TABLE `agents` ADD `replaced_by` text;--> statement-breakpoint
CREATE UNIQUE INDEX `agents_live_name` ON `agents` (`name`) WHERE revoked_at IS NULL;