-- Server jobs (agent-lost, revoked) get their own key namespace beside report ids, and
-- the queue an explicit order. Hand-adjusted from drizzle-kit's output: no PRAGMA (not
-- needed: no foreign keys), existing rows keep their order, server job keys lose their
-- "<kind>:" prefix.
CREATE TABLE `__new_projection_outbox` (
	`ord` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`kind` text NOT NULL,
	`key` text NOT NULL,
	`body` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`last_error` text,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
INSERT INTO `__new_projection_outbox`("kind", "key", "body", "attempts", "last_error", "created_at")
  SELECT "kind", CASE WHEN "kind" = 'report' THEN "report_id" ELSE substr("report_id", instr("report_id", ':') + 1) END,
         "body", "attempts", "last_error", "created_at"
    FROM `projection_outbox` ORDER BY "created_at", "report_id";--> statement-breakpoint
DROP TABLE `projection_outbox`;--> statement-breakpoint
ALTER TABLE `__new_projection_outbox` RENAME TO `projection_outbox`;--> statement-breakpoint
CREATE UNIQUE INDEX `projection_outbox_job` ON `projection_outbox` (`kind`,`key`);--> statement-breakpoint
-- Applied ids are kept only while their step is open (settled steps answer from command_steps).
DELETE FROM `applied_reports` WHERE `id` NOT IN (
  SELECT `step_id` || ':started' FROM `command_steps` WHERE `finished_at` IS NULL
  UNION ALL SELECT `step_id` || ':finished' FROM `command_steps` WHERE `finished_at` IS NULL);
--> statement-breakpoint
-- Commands stored before deployment_id existed: report checks read it from the row now.
UPDATE `commands` SET `deployment_id` = json_extract(`body`, '$.deploymentId') WHERE `deployment_id` = '';
