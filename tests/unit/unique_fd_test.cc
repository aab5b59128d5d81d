// UniqueFd owns exactly one descriptor and closes it exactly once; BorrowedFd never closes.
#include "common/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <type_traits>
#include <utility>

namespace rot13d {
namespace {

// Whether fd is open in this process. F_GETFD has no side effects and fails
// with EBADF exactly when the descriptor is not open.
bool IsOpen(int fd) {
  errno = 0;
  int r = fcntl(fd, F_GETFD);
  if (r >= 0) return true;
  EXPECT_EQ(errno, EBADF) << "fd " << fd;
  return false;
}

int OpenDevNull() {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  return fd;
}

// The type rules are part of the contract: move-only, and no silent int conversion.
static_assert(!std::is_copy_constructible_v<UniqueFd>);
static_assert(!std::is_copy_assignable_v<UniqueFd>);
static_assert(std::is_nothrow_move_constructible_v<UniqueFd>);
static_assert(std::is_nothrow_move_assignable_v<UniqueFd>);
static_assert(!std::is_convertible_v<UniqueFd, int>);
static_assert(!std::is_convertible_v<int, UniqueFd>);
static_assert(!std::is_convertible_v<int, BorrowedFd>);
static_assert(std::is_trivially_copyable_v<BorrowedFd>);

TEST(UniqueFd, DefaultIsInvalid) {
  UniqueFd fd;
  EXPECT_FALSE(fd.valid());
  EXPECT_FALSE(static_cast<bool>(fd));
  EXPECT_EQ(fd.get(), -1);
  EXPECT_FALSE(fd.borrow().valid());
}

TEST(UniqueFd, ClosesOnDestruction) {
  int raw = OpenDevNull();
  {
    UniqueFd fd(raw);
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(fd.get(), raw);
    EXPECT_TRUE(IsOpen(raw));
  }
  EXPECT_FALSE(IsOpen(raw));
}

TEST(UniqueFd, MoveConstructionTransfersOwnership) {
  int raw = OpenDevNull();
  UniqueFd a(raw);
  {
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
    EXPECT_EQ(b.get(), raw);
    EXPECT_TRUE(IsOpen(raw));
  }
  EXPECT_FALSE(IsOpen(raw));  // b closed it; a's destructor must not try again
}

TEST(UniqueFd, MoveAssignmentClosesTheOldDescriptor) {
  int first = OpenDevNull();
  int second = OpenDevNull();
  UniqueFd a(first);
  UniqueFd b(second);
  a = std::move(b);
  EXPECT_FALSE(IsOpen(first));
  EXPECT_TRUE(IsOpen(second));
  EXPECT_EQ(a.get(), second);
  EXPECT_FALSE(b.valid());  // NOLINT(bugprone-use-after-move)
}

TEST(UniqueFd, SelfMoveAssignmentKeepsTheDescriptor) {
  int raw = OpenDevNull();
  UniqueFd a(raw);
  UniqueFd& alias = a;  // through a reference, so the compiler does not flag the self-move
  a = std::move(alias);
  EXPECT_EQ(a.get(), raw);
  EXPECT_TRUE(IsOpen(raw));
}

TEST(UniqueFd, ReleaseGivesUpOwnershipWithoutClosing) {
  int raw = OpenDevNull();
  {
    UniqueFd fd(raw);
    EXPECT_EQ(fd.release(), raw);
    EXPECT_FALSE(fd.valid());
    EXPECT_EQ(fd.release(), -1);  // nothing left to release
  }
  EXPECT_TRUE(IsOpen(raw));
  ASSERT_EQ(close(raw), 0);
}

TEST(UniqueFd, ResetClosesTheOldAndTakesTheNew) {
  int first = OpenDevNull();
  int second = OpenDevNull();
  UniqueFd fd(first);
  fd.reset(second);
  EXPECT_FALSE(IsOpen(first));
  EXPECT_TRUE(IsOpen(second));
  EXPECT_EQ(fd.get(), second);
  fd.reset();
  EXPECT_FALSE(IsOpen(second));
  EXPECT_FALSE(fd.valid());
  fd.reset();  // resetting an empty UniqueFd is harmless
  EXPECT_FALSE(fd.valid());
}

// Callers read errno after a failed call even when a UniqueFd goes out of scope
// in between; closing must not overwrite it.
TEST(UniqueFd, ErrnoPreservedAcrossDestructionAndReset) {
  int raw = OpenDevNull();
  {
    UniqueFd fd(raw);
    errno = ENOSPC;
  }
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_FALSE(IsOpen(raw));

  // Even when close itself fails: own a descriptor that is already closed.
  int stale = OpenDevNull();
  ASSERT_EQ(close(stale), 0);
  {
    UniqueFd fd(stale);
    errno = EMFILE;
  }
  EXPECT_EQ(errno, EMFILE);

  UniqueFd fd(OpenDevNull());
  errno = ETIMEDOUT;
  fd.reset();
  EXPECT_EQ(errno, ETIMEDOUT);
}

TEST(UniqueFd, BorrowSeesTheSameDescriptorAndDoesNotClose) {
  int raw = OpenDevNull();
  UniqueFd fd(raw);
  {
    BorrowedFd b = fd.borrow();
    EXPECT_TRUE(b.valid());
    EXPECT_EQ(b.get(), raw);
    BorrowedFd copy = b;
    EXPECT_EQ(copy.get(), raw);
  }
  EXPECT_TRUE(IsOpen(raw));
  EXPECT_TRUE(fd.valid());
}

TEST(BorrowedFd, ValidityAndNeverCloses) {
  constexpr BorrowedFd none;
  static_assert(!none.valid() && none.get() == -1);
  constexpr BorrowedFd zero(0);
  static_assert(zero.valid() && zero.get() == 0);  // fd 0 is a real descriptor

  int raw = OpenDevNull();
  { BorrowedFd b(raw); }
  EXPECT_TRUE(IsOpen(raw));
  ASSERT_EQ(close(raw), 0);
}

}  // namespace
}  // namespace rot13d
