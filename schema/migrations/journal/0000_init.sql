CREATE TABLE `commands` (
	`seq` integer PRIMARY KEY NOT NULL,
	`id` text NOT NULL,
	`body` text NOT NULL,
	`state` text NOT NULL,
	`received_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `commands_id_unique` ON `commands` (`id`);--> statement-breakpoint
CREATE TABLE `meta` (
	`key` text PRIMARY KEY NOT NULL,
	`value` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `steps` (
	`step_id` text PRIMARY KEY NOT NULL,
	`deployment_id` text NOT NULL,
	`command_seq` integer NOT NULL,
	`position` integer NOT NULL,
	`state` text NOT NULL,
	`pid` integer,
	`exit_code` integer,
	`reason` text,
	`started_at` integer,
	`finished_at` integer,
	`log_uploaded` integer DEFAULT 0 NOT NULL,
	`log_size` integer
);
--> statement-breakpoint
CREATE TABLE `outbox` (
	`ord` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`id` text NOT NULL,
	`body` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `outbox_id_unique` ON `outbox` (`id`);