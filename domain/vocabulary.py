"""The words of account-based marketing, as the values stored in events."""

from enum import StrEnum


class AbmStage(StrEnum):
    IDENTIFIED = "identified"
    PRIORITIZED = "prioritized"
    OUTREACH = "outreach"
    WARM_UP = "warm_up"
    WON = "won"
    LOST = "lost"
    EXCLUDED = "excluded"


# The way forward through ABM; `lost` and `excluded` lie off it.
PIPELINE: tuple[AbmStage, ...] = (
    AbmStage.IDENTIFIED,
    AbmStage.PRIORITIZED,
    AbmStage.OUTREACH,
    AbmStage.WARM_UP,
    AbmStage.WON,
)
ACTIVE_STAGES = frozenset({AbmStage.PRIORITIZED, AbmStage.OUTREACH, AbmStage.WARM_UP})


class FunnelState(StrEnum):
    SEE = "see"
    THINK = "think"
    DO = "do"
    CARE = "care"


FUNNEL: tuple[FunnelState, ...] = tuple(FunnelState)


class ScreeningOutcome(StrEnum):
    QUALIFIED = "qualified"
    EXCLUDED = "excluded"


class BuyingRole(StrEnum):
    ECONOMIC = "economic"
    TECHNICAL = "technical"
    END_USER = "end_user"


BUYING_ROLES = tuple(BuyingRole)  # in their order; iterating the Enum itself is slow


class DecisionPower(StrEnum):
    DECISION_MAKER = "decision_maker"
    INFLUENCER = "influencer"


class Reaction(StrEnum):
    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"
    NONE = "none"  # followed up, and no response came: recorded as its own fact


class DealOutcome(StrEnum):
    WON = "won"
    LOST = "lost"


BANT_DIMENSIONS = ("budget", "authority", "need", "timing")
BANT_MIN, BANT_MAX = 1, 5
