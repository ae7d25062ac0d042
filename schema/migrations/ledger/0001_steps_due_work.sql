CREATE TABLE `command_steps` (
	`step_id` text PRIMARY KEY NOT NULL,
	`command_seq` integer NOT NULL,
	`finished_at` integer
);
--> statement-breakpoint
CREATE INDEX `command_steps_open` ON `command_steps` (`finished_at`,`command_seq`);--> statement-breakpoint
CREATE TABLE `due_work` (
	`key` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`command_seq` integer NOT NULL,
	`due_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `due_work_due_at` ON `due_work` (`due_at`);--> statement-breakpoint
ALTER TABLE `commands` ADD `deployment_id` text DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE `commands` ADD `agent_lost_after_seconds` integer DEFAULT 900 NOT NULL;--> statement-breakpoint
ALTER TABLE `commands` ADD `finished_at` integer;--> statement-breakpoint
ALTER TABLE `commands` ADD `lost_at` integer;--> statement-breakpoint
CREATE INDEX `commands_open` ON `commands` (`finished_at`,`seq`);--> statement-breakpoint
ALTER TABLE `projection_outbox` ADD `kind` text DEFAULT 'report' NOT NULL;