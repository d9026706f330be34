"""The console's words in Simplified Chinese (the default) and English.

One table, key -> (zh-CN, en): a page uses ``t("key", **values)``. A key missing here shows as the key
itself (``enum.*`` and ``status.*`` fall back to the bare value), so a forgotten translation is visible
but never breaks a page; ``tests/test_console_pages.py`` checks every key the templates use is here.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LANGS", "MESSAGES", "translator"]

LANGS = ("zh-CN", "en")

MESSAGES: dict[str, tuple[str, str]] = {
    "app.name": ("callvet 控制台", "callvet console"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    # roles
    "role.admin": ("管理员", "admin"),
    "role.analyst": ("反欺诈分析员", "fraud analyst"),
    "role.approver": ("审批员", "approver"),
    "role.risk_officer": ("风险专家", "risk officer"),
    "role.auditor": ("审计员", "auditor"),
    # navigation and landing tiles
    "nav.blacklist": ("黑名单", "Blacklist"),
    "nav.blacklist.what": ("欺诈者声纹：身份、样本、上传登记、删除",
        "Fraudster voices: identities, samples, enrol, delete"),
    "nav.alarms": ("实时告警", "Live alarms"),
    "nav.alarms.what": ("通话中命中黑名单的告警，实时出现", "Calls matching the blacklist, as they happen"),
    "nav.tasks": ("审批任务", "Task inbox"),
    "nav.tasks.what": ("按优先级排列的待办审批", "Approvals waiting for you, best first"),
    "nav.policies": ("决策规则", "Decision rules"),
    "nav.policies.what": ("编辑规则表、提交、由第二人生效",
        "Edit rule tables, propose, a second person activates"),
    "nav.processes": ("流程定义", "Processes"),
    "nav.processes.what": ("上传、校验并启用 BPMN 流程", "Upload, validate and activate BPMN processes"),
    "nav.audit": ("审计日志", "Audit log"),
    "nav.audit.what": ("谁在何时做了什么（只读）", "Who did what, when (read-only)"),
    "home.hello": ("您好，{name}", "Hello, {name}"),
    # signing in
    "auth.title": ("登录", "Sign in"),
    "auth.username": ("用户名", "Username"),
    "auth.password": ("密码", "Password"),
    "auth.sign_in": ("登录", "Sign in"),
    "auth.logout": ("退出", "Sign out"),
    "auth.hint": ("账号由管理员用 callvet users create 创建。",
        "Accounts are made by an admin with callvet users create."),
    "auth.failed": ("用户名或密码错误，或账号已锁定。",
        "Wrong username or password, or the account is locked."),
    "auth.csrf": ("表单已过期，请重新登录。", "The form has expired; please sign in again."),
    "auth.change_title": ("修改密码", "Change password"),
    "auth.must_change": ("首次登录请先设置新密码。", "Set a new password before you go on (first sign-in)."),
    "auth.current": ("当前密码", "Current password"),
    "auth.new": ("新密码（至少 12 位）", "New password (12 characters or more)"),
    "auth.repeat": ("再次输入新密码", "New password again"),
    "auth.change": ("修改", "Change"),
    "auth.mismatch": ("两次输入的新密码不一致。", "The two new passwords differ."),
    "denied.title": ("无权访问", "Forbidden"),
    "denied.back": ("返回首页", "Back to the start page"),
    # done notices
    "done.enrolled": ("样本已登记。", "Sample enrolled."),
    "done.deleted": ("身份已删除。", "Identity deleted."),
    "done.completed": ("任务 {task} 已完成。", "Task {task} completed."),
    "done.proposed": ("新版本已提交，等待第二人生效。",
        "New version proposed; a second person must activate it."),
    "done.activated": ("版本已生效。", "Version activated."),
    "done.rejected": ("版本已驳回。", "Version rejected."),
    "done.uploaded": ("流程 {what} 已上传（未启用）。", "Process {what} uploaded (not active yet)."),
    # blacklist
    "bl.new": ("新建欺诈者身份", "New fraudster identity"),
    "bl.label": ("名称", "Label"),
    "bl.notes": ("备注", "Notes"),
    "bl.create": ("创建", "Create"),
    "bl.samples": ("样本数", "Samples"),
    "bl.speech": ("有效语音", "Net speech"),
    "bl.by": ("创建人", "By"),
    "bl.at": ("时间", "At"),
    "bl.none": ("黑名单为空。", "The blacklist is empty."),
    "bl.enrolled": ("已登记样本 #{n}", "Sample #{n} enrolled"),
    "bl.self_score": ("与已有样本相似度", "score against earlier samples"),
    "bl.duplicate": ("该声音也匹配身份「{label}」（{score}），请确认是否同一人。",
                     "This voice also matches \u201c{label}\u201d ({score}); check whether they are "
                     "one person."),
    "bl.spoof_override": ("反欺骗检测标记为 {kind}，已按理由强制登记（已审计）。",
                          "Flagged as {kind} by the countermeasure; enrolled by override (audited)."),
    "bl.add_sample": ("添加样本", "Add a sample"),
    "bl.recording": ("录音文件（WAV）", "Recording (WAV)"),
    "bl.or_call": ("或历史通话 ID", "or a past call's id"),
    "bl.spoof_flagged": ("反欺骗检测认为该录音是合成或回放的",
        "The countermeasure flags this recording as synthetic or replayed"),
    "bl.override": ("仍然登记（需填写理由，将被审计）", "Enrol anyway (needs a reason; audited)"),
    "bl.override_reason": ("理由", "Reason"),
    "bl.enrol": ("登记", "Enrol"),
    "bl.prints": ("声纹样本", "Voice prints"),
    "bl.backend": ("模型", "Back end"),
    "bl.searchable": ("可检索", "Searchable"),
    "bl.no_prints": ("尚无样本。", "No samples yet."),
    "bl.delete": ("删除该身份", "Delete this identity"),
    "bl.reason": ("删除理由（必填）", "Reason (required)"),
    # alarms and calls
    "al.live": ("实时告警", "Live alarms"),
    "al.connecting": ("连接中…", "connecting…"),
    "al.connected": ("实时", "live"),
    "al.lost": ("连接中断，正在重连", "connection lost, retrying"),
    "al.ended": ("会话已结束，请重新登录", "session ended; sign in again"),
    "al.waiting": ("暂无告警，新告警会自动出现。", "No alarms yet; new ones appear here by themselves."),
    "al.tier": ("级别", "Tier"),
    "al.call": ("通话", "Call"),
    "al.application": ("申请", "Application"),
    "al.identity": ("命中身份", "Identity"),
    "al.score": ("得分", "Score"),
    "al.spoof": ("欺骗", "Spoof"),
    "al.speech": ("语音", "Speech"),
    "al.time": ("时间", "Time"),
    "al.recent": ("曾告警的通话", "Calls that raised an alarm"),
    "al.status": ("状态", "State"),
    "al.none": ("没有告警通话。", "No alarm calls."),
    "al.alarm_ever": ("曾告警", "alarm raised"),
    "al.event": ("事件", "Event"),
    "al.detail": ("详情", "Detail"),
    # tasks
    "tk.order": ("按优先级从高到低；截止时间临近的任务优先级更高。",
        "Highest priority first; deadlines raise priority."),
    "tk.priority": ("优先级", "Priority"),
    "tk.name": ("任务", "Task"),
    "tk.amount": ("金额", "Amount"),
    "tk.risk": ("风险分", "Risk"),
    "tk.due": ("截止", "Due"),
    "tk.assignee": ("处理人", "Assignee"),
    "tk.instance": ("流程实例", "Instance"),
    "tk.status": ("状态", "Status"),
    "tk.none": ("没有待办任务。", "No open tasks."),
    "tk.evidence": ("案件证据", "Evidence"),
    "tk.case": ("案件", "Case"),
    "tk.decision": ("决策", "Decision"),
    "tk.interview": ("面谈结果", "Interview result"),
    "tk.voiceprint": ("声纹告警", "Voiceprint alarm"),
    "tk.flags": ("复核标记", "Review flags"),
    "tk.complete": ("完成任务", "Complete"),
    "tk.not_open": ("该任务已不在待办状态。", "This task is no longer open."),
    "enum.approve": ("批准", "approve"),
    "enum.decline": ("拒绝", "decline"),
    # policies and the editor
    "po.maker_checker": ("四眼原则：提交人不能让自己的版本生效，须由另一位审批员操作。",
                         "Maker-checker: whoever proposes a version cannot activate it; another person "
                         "with the approver role must."),
    "po.active": ("生效", "active"),
    "po.edit": ("编辑规则表", "Edit rule tables"),
    "po.status": ("状态", "Status"),
    "po.note": ("说明", "Note"),
    "po.by": ("提交人", "Proposed by"),
    "po.activated_by": ("生效人", "Activated by"),
    "po.reason": ("理由", "reason"),
    "po.activate": ("生效", "Activate"),
    "po.reject": ("驳回", "Reject"),
    "status.active": ("生效中", "active"),
    "status.proposed": ("待生效", "proposed"),
    "status.retired": ("已退役", "retired"),
    "status.rejected": ("已驳回", "rejected"),
    "ed.title": ("编辑 {name}（基于 v{base}）", "Edit {name} (from v{base})"),
    "ed.help": ("修改单元格后提交为新版本；生效须由另一人完成。",
        "Change cells, then propose a new version; another person activates it."),
    "ed.noscript": ("规则表编辑器需要 JavaScript。", "The rule-table editor needs JavaScript."),
    "ed.note": ("修改说明（必填，记入审计）", "Why (required; kept in the audit log)"),
    "ed.propose": ("提交新版本", "Propose new version"),
    "ed.changed": ("修改的单元格", "cells changed"),
    "ed.added": ("新增规则", "rules added"),
    "ed.removed": ("删除规则", "rules removed"),
    "ed.invalid": ("有误", "invalid"),
    "ed.hitPolicy": ("命中策略", "hit policy"),
    "ed.addRule": ("添加规则", "Add rule"),
    # processes
    "pr.refused": ("流程被拒绝", "Process refused"),
    "pr.element": ("出错元素", "Element"),
    "pr.code": ("错误码", "Code"),
    "pr.upload": ("上传 BPMN", "Upload BPMN"),
    "pr.file": ("BPMN 2.0 文件", "BPMN 2.0 file"),
    "pr.validate_upload": ("校验并上传", "Validate and upload"),
    "pr.help": ("上传的新版本不会自动启用。", "An uploaded version is not active until activated."),
    "pr.key": ("流程键", "Process key"),
    "pr.name": ("名称", "Name"),
    "pr.active": ("启用", "Active"),
    # audit
    "au.action": ("操作", "Action"),
    "au.target_type": ("对象类型", "Target type"),
    "au.target_id": ("对象 ID", "Target id"),
    "au.filter": ("筛选", "Filter"),
    "au.at": ("时间", "At"),
    "au.actor": ("操作人", "Actor"),
    "au.target": ("对象", "Target"),
    "au.reason": ("理由", "Reason"),
    "au.details": ("详情", "Details"),
    "au.none": ("没有记录。", "No entries."),
    "au.older": ("更早", "Older"),
}


def translator(lang: str) -> Callable[..., str]:
    i = 1 if lang == "en" else 0

    def t(key: str, **values: object) -> str:
        pair = MESSAGES.get(key)
        if pair is None:
            head, _, rest = key.partition(".")
            return rest if head in ("enum", "status") and rest else key
        text = pair[i]
        return text.format(**values) if values else text

    return t
