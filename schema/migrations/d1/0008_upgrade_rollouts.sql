CREATE TABLE `upgrade_rollouts` (
	`id` text PRIMARY KEY NOT NULL,
	`version` text NOT NULL,
	`sha256` text NOT NULL,
	`waves` text NOT NULL,
	`current_wave` integer NOT NULL,
	`state` text NOT NULL,
	`reason` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `upgrade_rollouts_state` ON `upgrade_rollouts` (`state`);